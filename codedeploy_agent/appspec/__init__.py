"""The appspec file: EC2/on-premises grammar (run by the agent), Lambda and ECS (parsed only)."""

from __future__ import annotations

from codedeploy_agent.appspec.check import CheckReport, Problem, check_appspec
from codedeploy_agent.appspec.loader import (
    find_appspec,
    load_appspec,
    load_appspec_file,
    read_appspec_text,
)
from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.appspec.parser import appspec_from_data, check_hook_names, parse_appspec
from codedeploy_agent.appspec.permissions import (
    check_file_permission,
    parse_ace,
    parse_context,
    parse_mode,
    parse_range,
)
from codedeploy_agent.appspec.serverless import (
    EcsAppSpec,
    LambdaAppSpec,
    appspec_kind,
    parse_any_appspec,
    parse_ecs_appspec,
    parse_lambda_appspec,
)

__all__ = [
    "AppSpec",
    "CheckReport",
    "EcsAppSpec",
    "LambdaAppSpec",
    "Problem",
    "appspec_from_data",
    "appspec_kind",
    "check_appspec",
    "check_file_permission",
    "check_hook_names",
    "find_appspec",
    "load_appspec",
    "load_appspec_file",
    "parse_ace",
    "parse_any_appspec",
    "parse_appspec",
    "parse_context",
    "parse_ecs_appspec",
    "parse_lambda_appspec",
    "parse_mode",
    "parse_range",
    "read_appspec_text",
]
