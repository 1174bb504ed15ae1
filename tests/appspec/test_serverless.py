"""Lambda and ECS appspecs: valid samples and error paths (service reference §6.1, §7.1)."""

from __future__ import annotations

import json

import pytest

from codedeploy_agent.appspec import (
    appspec_kind,
    parse_any_appspec,
    parse_ecs_appspec,
    parse_lambda_appspec,
)
from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.appspec.serverless import (
    EcsAppSpec,
    EcsAwsVpcConfiguration,
    EcsCapacityProvider,
    EcsHook,
    EcsHookEvent,
    EcsLoadBalancerInfo,
    EcsService,
    LambdaAppSpec,
    LambdaFunction,
    LambdaHook,
    LambdaHookEvent,
)
from codedeploy_agent.errors import AppSpecError

LAMBDA = """\
version: 0.0
Resources:
  - myLambdaFunction:
      Type: AWS::Lambda::Function
      Properties:
        Name: "myLambdaFunction"
        Alias: "live"
        CurrentVersion: "1"
        TargetVersion: "2"
Hooks:
  - BeforeAllowTraffic: "CodeDeployHook_pre"
  - AfterAllowTraffic: "CodeDeployHook_post"
"""

ECS = """\
version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: "arn:aws:ecs:us-east-1:111122223333:task-definition/web:3"
        LoadBalancerInfo:
          ContainerName: "web"
          ContainerPort: 80
        PlatformVersion: "LATEST"
        NetworkConfiguration:
          AwsvpcConfiguration:
            Subnets: ["subnet-1234abcd", "subnet-5678abcd"]
            SecurityGroups: ["sg-12345678"]
            AssignPublicIp: "ENABLED"
        CapacityProviderStrategy:
          - Base: 1
            CapacityProvider: "FARGATE_SPOT"
            Weight: 2
          - CapacityProvider: "FARGATE"
Hooks:
  - BeforeInstall: "LambdaFunctionToValidateBeforeInstall"
  - AfterInstall: "LambdaFunctionToValidateAfterInstall"
  - AfterAllowTestTraffic: "LambdaFunctionToValidateAfterTestTrafficStarts"
  - BeforeAllowTraffic: "LambdaFunctionToValidateBeforeAllowingProductionTraffic"
  - AfterAllowTraffic: "LambdaFunctionToValidateAfterAllowingProductionTraffic"
"""

EXPECTED_LAMBDA = LambdaAppSpec(
    version=0.0,
    function=LambdaFunction("myLambdaFunction", "myLambdaFunction", "live", "1", "2"),
    hooks=(
        LambdaHook(LambdaHookEvent.BEFORE_ALLOW_TRAFFIC, "CodeDeployHook_pre"),
        LambdaHook(LambdaHookEvent.AFTER_ALLOW_TRAFFIC, "CodeDeployHook_post"),
    ),
)


def lambda_error(text: str) -> AppSpecError:
    with pytest.raises(AppSpecError) as info:
        parse_lambda_appspec(text)
    return info.value


def ecs_error(text: str) -> AppSpecError:
    with pytest.raises(AppSpecError) as info:
        parse_ecs_appspec(text)
    return info.value


def test_lambda_sample() -> None:
    """The User Guide's Lambda example parses into its values."""
    assert parse_lambda_appspec(LAMBDA) == EXPECTED_LAMBDA


def test_lambda_lower_case_keys_and_numbers() -> None:
    """Lower-case property names (the UG reference) and numeric versions are accepted."""
    text = LAMBDA.replace("Name:", "name:").replace("Alias:", "alias:")
    text = text.replace('CurrentVersion: "1"', "currentversion: 1").replace(
        'TargetVersion: "2"', "targetversion: 2"
    )
    assert parse_lambda_appspec(text) == EXPECTED_LAMBDA


def test_lambda_json_form() -> None:
    """The same appspec as JSON text, and as already decoded data."""
    data = {
        "version": 0.0,
        "Resources": [
            {
                "myLambdaFunction": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": "myLambdaFunction",
                        "Alias": "live",
                        "CurrentVersion": "1",
                        "TargetVersion": "2",
                    },
                }
            }
        ],
        "Hooks": [
            {"BeforeAllowTraffic": "CodeDeployHook_pre"},
            {"AfterAllowTraffic": "CodeDeployHook_post"},
        ],
    }
    assert parse_lambda_appspec(json.dumps(data, indent="\t")) == EXPECTED_LAMBDA
    assert parse_lambda_appspec(data) == EXPECTED_LAMBDA


def test_lambda_hook_lookup() -> None:
    """hook_function returns the function for an event, None when not hooked."""
    spec = parse_lambda_appspec(
        LAMBDA.split("Hooks:", maxsplit=1)[0] + "Hooks:\n  - AfterAllowTraffic: post\n"
    )
    assert spec.hook_function("AfterAllowTraffic") == "post"
    assert spec.hook_function("BeforeAllowTraffic") is None


def test_lambda_without_hooks() -> None:
    """Hooks are optional."""
    assert parse_lambda_appspec(LAMBDA.split("Hooks:", maxsplit=1)[0]).hooks == ()


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            'TargetVersion: "2"',
            "",
            "Resources[0].myLambdaFunction.Properties.TargetVersion",
            (
                "missing; expected the version to shift traffic to: a positive integer version "
                'number such as "2"'
            ),
        ),
        (
            'TargetVersion: "2"',
            'TargetVersion: "$LATEST"',
            "Resources[0].myLambdaFunction.Properties.TargetVersion",
            'found a string ("$LATEST")',
        ),
        (
            'CurrentVersion: "1"',
            "CurrentVersion: 0",
            "Resources[0].myLambdaFunction.Properties.CurrentVersion",
            "found a number (0)",
        ),
        (
            'Alias: "live"',
            "Alias: ''",
            "Resources[0].myLambdaFunction.Properties.Alias",
            'found a string ("")',
        ),
        (
            'Name: "myLambdaFunction"',
            "Name: [a]",
            "Resources[0].myLambdaFunction.Properties.Name",
            'found a list (["a"])',
        ),
        ("Type: AWS::Lambda::Function", "Type: AWS::Lambda::Function\n      Extra: 1", None, None),
        ("version: 0.0", 'version: "0.0"', "version", 'found a string ("0.0"); expected 0.0'),
        (
            "- BeforeAllowTraffic:",
            "- BeforeInstall:",
            "Hooks[0].BeforeInstall",
            "unknown hook 'BeforeInstall'; expected one of BeforeAllowTraffic, AfterAllowTraffic",
        ),
        (
            '- AfterAllowTraffic: "CodeDeployHook_post"',
            "- BeforeAllowTraffic: again",
            "Hooks[1].BeforeAllowTraffic",
            "hook given twice",
        ),
        (
            '"CodeDeployHook_post"',
            "~",
            "Hooks[1].AfterAllowTraffic",
            "missing; expected the name or ARN of a Lambda function",
        ),
    ],
)
def test_lambda_errors_name_path_and_expectation(
    old: str, new: str, path: str | None, message: str | None
) -> None:
    """Each error carries the key path and says what was expected, in the message too."""
    text = LAMBDA.replace(old, new)
    if path is None or message is None:  # an unknown property is only a warning
        parse_lambda_appspec(text)
        return
    err = lambda_error(text)
    assert err.path == path
    assert str(err).startswith(f"Invalid AppSpec property {path}: ")
    assert message in str(err)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (
            "version: 0.0\n",
            "Resources",
            "missing; expected a list holding exactly one resource of Type AWS::Lambda::Function",
        ),
        ("version: 0.0\nResources: []\n", "Resources", "0 resources"),
        (
            "version: 0.0\nResources:\n  - a: {Type: AWS::Lambda::Function}\n  - b: {}\n",
            "Resources",
            "2 resources",
        ),
        (
            "version: 0.0\nResources:\n  - {a: {}, b: {}}\n",
            "Resources[0]",
            "expected a one-key mapping",
        ),
        (
            "version: 0.0\nResources:\n  - a: x\n",
            "Resources[0].a",
            "expected a mapping with Type and Properties",
        ),
        (
            "version: 0.0\nResources:\n  - a: {Type: AWS::ECS::Service, Properties: {}}\n",
            "Resources[0].a.Type",
            'found a string ("AWS::ECS::Service"); expected AWS::Lambda::Function',
        ),
        (
            "version: 0.0\nResources:\n  - a: {Type: AWS::Lambda::Function}\n",
            "Resources[0].a.Properties",
            "missing; expected a mapping",
        ),
        ("- 1\n", "", "expected a mapping with version, Resources and Hooks"),
    ],
)
def test_lambda_structure_errors(text: str, path: str, message: str) -> None:
    """Resources must hold exactly one one-key resource of the right Type with Properties."""
    err = lambda_error(text)
    assert err.path == path
    assert message in str(err)


def test_lambda_hooks_must_be_a_list_of_one_key_maps() -> None:
    """A Hooks mapping (EC2 style) and a two-key item are refused with the expected form."""
    err = lambda_error(LAMBDA.split("Hooks:", maxsplit=1)[0] + "Hooks:\n  BeforeAllowTraffic: f\n")
    assert err.path == "Hooks"
    assert (
        "expected a list of one-key mappings such as '- BeforeAllowTraffic: MyValidationFunction'"
        in str(err)
    )
    err = lambda_error(
        LAMBDA.split("Hooks:", maxsplit=1)[0]
        + "Hooks:\n  - {BeforeAllowTraffic: f, AfterAllowTraffic: g}\n"
    )
    assert err.path == "Hooks[0]"


def test_keys_differing_only_in_case_are_refused() -> None:
    """`Name` and `name` together are ambiguous."""
    err = lambda_error(LAMBDA.replace('Name: "myLambdaFunction"', 'Name: "a"\n        name: "b"'))
    assert err.path == "Resources[0].myLambdaFunction.Properties.name"
    assert "given twice (keys are not case-sensitive)" in str(err)


def test_ecs_sample() -> None:
    """The User Guide's ECS example parses into its values."""
    assert parse_ecs_appspec(ECS) == EcsAppSpec(
        version=0.0,
        service=EcsService(
            resource_name="TargetService",
            task_definition="arn:aws:ecs:us-east-1:111122223333:task-definition/web:3",
            load_balancer_info=EcsLoadBalancerInfo("web", 80),
            platform_version="LATEST",
            network_configuration=EcsAwsVpcConfiguration(
                ("subnet-1234abcd", "subnet-5678abcd"), ("sg-12345678",), "ENABLED"
            ),
            capacity_provider_strategy=(
                EcsCapacityProvider("FARGATE_SPOT", 1, 2),
                EcsCapacityProvider("FARGATE"),
            ),
        ),
        hooks=tuple(
            EcsHook(event, fn)
            for event, fn in zip(
                EcsHookEvent,
                [
                    "LambdaFunctionToValidateBeforeInstall",
                    "LambdaFunctionToValidateAfterInstall",
                    "LambdaFunctionToValidateAfterTestTrafficStarts",
                    "LambdaFunctionToValidateBeforeAllowingProductionTraffic",
                    "LambdaFunctionToValidateAfterAllowingProductionTraffic",
                ],
                strict=True,
            )
        ),
    )


def test_ecs_minimal() -> None:
    """Only TaskDefinition and LoadBalancerInfo are required; the port may be a digit string."""
    spec = parse_ecs_appspec(
        "version: 0.0\nResources:\n  - svc:\n      Type: AWS::ECS::Service\n      Properties:\n"
        "        TaskDefinition: td:1\n"
        "        LoadBalancerInfo: {ContainerName: web, ContainerPort: '8080'}\n"
    )
    assert spec.service.load_balancer_info == EcsLoadBalancerInfo("web", 8080)
    assert (spec.service.platform_version, spec.service.network_configuration, spec.hooks) == (
        None,
        None,
        (),
    )


P = "Resources[0].TargetService.Properties"


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "          ContainerPort: 80\n",
            "",
            f"{P}.LoadBalancerInfo.ContainerPort",
            "missing; expected the container's port, 1 to 65535",
        ),
        (
            "ContainerPort: 80",
            "ContainerPort: 70000",
            f"{P}.LoadBalancerInfo.ContainerPort",
            "found a number (70000)",
        ),
        (
            "ContainerPort: 80",
            "ContainerPort: true",
            f"{P}.LoadBalancerInfo.ContainerPort",
            "found a boolean (true)",
        ),
        (
            'ContainerName: "web"',
            "ContainerName: ~",
            f"{P}.LoadBalancerInfo.ContainerName",
            "missing; expected the name of a container",
        ),
        (
            'TaskDefinition: "arn:aws:ecs:us-east-1:111122223333:task-definition/web:3"',
            "TaskDefinition: {}",
            f"{P}.TaskDefinition",
            "found a mapping ({})",
        ),
        (
            'AssignPublicIp: "ENABLED"',
            "AssignPublicIp: yes",
            f"{P}.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp",
            "found a boolean (true); expected ENABLED or DISABLED",
        ),
        (
            'Subnets: ["subnet-1234abcd", "subnet-5678abcd"]',
            "Subnets: []",
            f"{P}.NetworkConfiguration.AwsvpcConfiguration.Subnets",
            "expected a non-empty list of subnet ids",
        ),
        (
            'SecurityGroups: ["sg-12345678"]',
            'SecurityGroups: ["sg-1", 5]',
            f"{P}.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups[1]",
            "expected a non-empty string",
        ),
        (
            "Weight: 2",
            "Weight: -1",
            f"{P}.CapacityProviderStrategy[0].Weight",
            "expected a relative weight, 0 to 1000",
        ),
        (
            '- CapacityProvider: "FARGATE"',
            "- Base: 0",
            f"{P}.CapacityProviderStrategy[1].CapacityProvider",
            "missing; expected the name of a capacity provider",
        ),
        (
            "- AfterInstall:",
            "- ApplicationStart:",
            "Hooks[1].ApplicationStart",
            (
                "unknown hook 'ApplicationStart'; expected one of BeforeInstall, AfterInstall, "
                "AfterAllowTestTraffic, BeforeAllowTraffic, AfterAllowTraffic"
            ),
        ),
    ],
)
def test_ecs_errors_name_path_and_expectation(old: str, new: str, path: str, message: str) -> None:
    """Each ECS error carries its key path and the expectation."""
    assert old in ECS
    err = ecs_error(ECS.replace(old, new))
    assert err.path == path
    assert str(err).startswith(f"Invalid AppSpec property {path}: ")
    assert message in str(err)


def test_parse_any_chooses_by_content() -> None:
    """Lambda, ECS and EC2 appspecs are told apart by their content."""
    assert isinstance(parse_any_appspec(LAMBDA), LambdaAppSpec)
    assert isinstance(parse_any_appspec(ECS), EcsAppSpec)
    assert isinstance(parse_any_appspec("version: 0.0\nos: linux\n"), AppSpec)
    assert isinstance(parse_any_appspec(json.dumps({"version": 0, "os": "linux"})), AppSpec)


def test_parse_any_with_unknown_resource_type() -> None:
    """Resources without a Lambda/ECS Type (and no os) is an error at `Resources`."""
    with pytest.raises(AppSpecError) as info:
        parse_any_appspec("version: 0.0\nResources:\n  - x: {Type: AWS::S3::Bucket}\n")
    assert info.value.path == "Resources"
    assert (
        "expected a list holding one resource whose Type is AWS::Lambda::Function or "
        "AWS::ECS::Service" in str(info.value)
    )


def test_parse_any_ec2_errors_are_the_agents() -> None:
    """A document without Resources gets the EC2 grammar's messages (here: no os)."""
    with pytest.raises(AppSpecError) as info:
        parse_any_appspec("version: 0.0\n")
    assert info.value.path == "os"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"os": "linux", "Resources": []}, "ec2"),
        ({"resources": [{"f": {"type": "AWS::Lambda::Function"}}]}, "lambda"),
        ({"Resources": [{"s": {"Type": "AWS::ECS::Service"}}]}, "ecs"),
        ({"Resources": "x"}, "unknown"),
        ([1], "ec2"),
    ],
)
def test_appspec_kind(data: object, kind: str) -> None:
    """The platform is recognised from Resources/Type (keys in any case); os means EC2."""
    assert appspec_kind(data) == kind


def test_invalid_json_reports_the_json_error() -> None:
    """Text that looks like JSON but is neither JSON nor YAML reports the JSON position."""
    err = lambda_error('{"version": 0.0,\n "Resources": [}')
    assert "(line 2, column 16)" in str(err)
