"""Lambda and ECS appspecs (service reference §6.1, §7.1): parsed for the control plane, never run.

Both forms are `version: 0.0`, a `Resources` list holding one resource and an optional `Hooks`
list of one-key maps (`- BeforeAllowTraffic: "CodeDeployHook_pre"`). Keys are matched without
regard to case: the CodeDeploy User Guide prints them in lower case (`currentversion`) in its
reference and capitalised in its examples. Content may be YAML or JSON. Every error message names
the key path (`Resources[0].myFunc.Properties.TargetVersion`) and what is expected there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, TypeVar, cast

from codedeploy_agent.appspec._values import (
    Issues,
    describe,
    is_scalar,
    join_index,
    join_key,
    load_document,
    ruby_inspect,
    ruby_to_s,
)
from codedeploy_agent.appspec.model import AppSpec
from codedeploy_agent.appspec.parser import appspec_from_data
from codedeploy_agent.errors import AppSpecError

_T = TypeVar("_T")

LAMBDA_TYPE: Final = "AWS::Lambda::Function"
ECS_TYPE: Final = "AWS::ECS::Service"
_TOP_KEYS: Final = ("version", "Resources", "Hooks")
_RESOURCE_KEYS: Final = ("Type", "Properties")
_LAMBDA_KEYS: Final = ("Name", "Alias", "CurrentVersion", "TargetVersion")
_ECS_KEYS: Final = (
    "TaskDefinition",
    "LoadBalancerInfo",
    "PlatformVersion",
    "NetworkConfiguration",
    "CapacityProviderStrategy",
)
_MAX_PORT: Final = 65535
UNKNOWN_KIND: Final = (
    "Invalid AppSpec property Resources: no resource with a Type CodeDeploy deploys; expected a "
    f"list holding one resource whose Type is {LAMBDA_TYPE} or {ECS_TYPE} (or, for an "
    "EC2/on-premises appspec, an os property and no Resources)."
)


class LambdaHookEvent(StrEnum):
    """The hooks a Lambda deployment runs, in order."""

    BEFORE_ALLOW_TRAFFIC = "BeforeAllowTraffic"
    AFTER_ALLOW_TRAFFIC = "AfterAllowTraffic"


class EcsHookEvent(StrEnum):
    """The hooks an ECS deployment runs, in order."""

    BEFORE_INSTALL = "BeforeInstall"
    AFTER_INSTALL = "AfterInstall"
    AFTER_ALLOW_TEST_TRAFFIC = "AfterAllowTestTraffic"
    BEFORE_ALLOW_TRAFFIC = "BeforeAllowTraffic"
    AFTER_ALLOW_TRAFFIC = "AfterAllowTraffic"


@dataclass(frozen=True, slots=True)
class LambdaHook:
    """`- BeforeAllowTraffic: <function>`: the validation function run at that event."""

    event: LambdaHookEvent
    function_name: str


@dataclass(frozen=True, slots=True)
class LambdaFunction:
    """The one `AWS::Lambda::Function` resource: traffic on `alias` moves between versions."""

    resource_name: str
    name: str
    alias: str
    current_version: str  # a positive integer, kept as text like the service's API
    target_version: str


@dataclass(frozen=True, slots=True)
class LambdaAppSpec:
    """A Lambda deployment's appspec."""

    version: float
    function: LambdaFunction
    hooks: tuple[LambdaHook, ...] = ()

    def hook_function(self, event: str) -> str | None:
        """The function to invoke at `event`, or None when the appspec has no hook for it."""
        return next((h.function_name for h in self.hooks if h.event == event), None)


@dataclass(frozen=True, slots=True)
class EcsHook:
    """`- AfterAllowTestTraffic: <function>`: the validation function run at that event."""

    event: EcsHookEvent
    function_name: str


@dataclass(frozen=True, slots=True)
class EcsLoadBalancerInfo:
    """The container (and port) the load balancer's target groups send traffic to."""

    container_name: str
    container_port: int


@dataclass(frozen=True, slots=True)
class EcsAwsVpcConfiguration:
    """`NetworkConfiguration.AwsvpcConfiguration` of the replacement task set."""

    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: Literal["ENABLED", "DISABLED"]


@dataclass(frozen=True, slots=True)
class EcsCapacityProvider:
    """One item of `CapacityProviderStrategy`."""

    capacity_provider: str
    base: int | None = None
    weight: int | None = None


@dataclass(frozen=True, slots=True)
class EcsService:
    """The one `AWS::ECS::Service` resource: what the replacement task set runs."""

    resource_name: str
    task_definition: str
    load_balancer_info: EcsLoadBalancerInfo
    platform_version: str | None = None
    network_configuration: EcsAwsVpcConfiguration | None = None
    capacity_provider_strategy: tuple[EcsCapacityProvider, ...] = ()


@dataclass(frozen=True, slots=True)
class EcsAppSpec:
    """An ECS (blue/green) deployment's appspec."""

    version: float
    service: EcsService
    hooks: tuple[EcsHook, ...] = ()

    def hook_function(self, event: str) -> str | None:
        """The function to invoke at `event`, or None when the appspec has no hook for it."""
        return next((h.function_name for h in self.hooks if h.event == event), None)


# --- public entry points ------------------------------------------------------------------------


def parse_lambda_appspec(
    source: str | Mapping[str, object], *, filename: str = "appspec.yaml"
) -> LambdaAppSpec:
    """Parse a Lambda appspec (YAML or JSON text, or decoded data); raises AppSpecError."""
    return _strict(lambda_from_data(_decode(source, filename), Issues(collect=False)))


def parse_ecs_appspec(
    source: str | Mapping[str, object], *, filename: str = "appspec.yaml"
) -> EcsAppSpec:
    """Parse an ECS appspec (YAML or JSON text, or decoded data); raises AppSpecError."""
    return _strict(ecs_from_data(_decode(source, filename), Issues(collect=False)))


def parse_any_appspec(
    text: str, *, filename: str = "appspec.yml"
) -> AppSpec | LambdaAppSpec | EcsAppSpec:
    """Parse an appspec of any platform, choosing by content.

    A document with `Resources` and no `os` is a Lambda or ECS appspec, told apart by its
    resource's `Type`; anything else is the EC2/on-premises grammar.
    """
    data = load_document(text, filename=filename)
    kind = appspec_kind(data)
    if kind == "lambda":
        return parse_lambda_appspec(cast("Mapping[str, object]", data), filename=filename)
    if kind == "ecs":
        return parse_ecs_appspec(cast("Mapping[str, object]", data), filename=filename)
    if kind == "unknown":
        raise AppSpecError(UNKNOWN_KIND, "Resources")
    return appspec_from_data(data, filename=filename)


AppSpecKind = Literal["ec2", "lambda", "ecs", "unknown"]


def appspec_kind(data: object) -> AppSpecKind:
    """`ec2`, `lambda`, `ecs`, or `unknown` for `Resources` without a recognised `Type`."""
    if not isinstance(data, Mapping):
        return "ec2"
    top = {str(k).lower(): v for k, v in data.items()}
    if "resources" not in top or "os" in top:
        return "ec2"
    resources = top["resources"]
    if isinstance(resources, list) and resources and isinstance(resources[0], Mapping):
        for body in resources[0].values():
            if isinstance(body, Mapping):
                types = [v for k, v in body.items() if str(k).lower() == "type"]
                if LAMBDA_TYPE in types:
                    return "lambda"
                if ECS_TYPE in types:
                    return "ecs"
    return "unknown"


def _strict(result: _T | None) -> _T:
    if result is None:  # pragma: no cover - in fail-fast mode the first error was raised already
        raise AppSpecError("The AppSpec file is invalid.")
    return result


def _decode(source: str | Mapping[str, object], filename: str) -> object:
    return load_document(source, filename=filename) if isinstance(source, str) else source


def _message(path: str, problem: str, expected: str) -> str:
    return f"Invalid AppSpec property {path}: {problem}; expected {expected}."


def _found(raw: object) -> str:
    return "missing" if raw is None else f"found {describe(raw)} ({ruby_inspect(raw)})"


# --- case-insensitive objects -------------------------------------------------------------------


class _Object:
    """A mapping read with case-insensitive keys; unknown keys are warned about."""

    def __init__(
        self, raw: Mapping[object, object], path: str, known: tuple[str, ...], issues: Issues
    ) -> None:
        self.path = path
        self.issues = issues
        self._items: dict[str, tuple[str, object]] = {}
        wanted = {k.lower(): k for k in known}
        for key, value in raw.items():
            name = ruby_to_s(key)
            canonical = wanted.get(name.lower())
            if canonical is None:
                issues.warn(
                    f"unknown property '{name}' is ignored (known: {', '.join(known)})",
                    join_key(path, name),
                )
            elif canonical in self._items:
                issues.error(
                    _message(
                        join_key(path, name), "given twice (keys are not case-sensitive)", "it once"
                    ),
                    join_key(path, name),
                )
            else:
                self._items[canonical] = (name, value)

    def key_path(self, key: str) -> str:
        """The path of `key` as the user spelt it (or canonically when it is absent)."""
        return join_key(self.path, self._items.get(key, (key, None))[0])

    def get(self, key: str) -> object:
        """The value of `key`, or None."""
        return self._items.get(key, (key, None))[1]

    def text(self, key: str, expected: str, *, required: bool = True) -> str | None:
        """A non-empty scalar at `key` as text; records an error when it is missing or wrong."""
        raw = self.get(key)
        if raw is None and not required:
            return None
        if (
            raw is None
            or not is_scalar(raw)
            or isinstance(raw, bool)
            or ruby_to_s(raw).strip() == ""
        ):
            path = self.key_path(key)
            self.issues.error(_message(path, _found(raw), expected), path)
            return None
        return ruby_to_s(raw)

    def integer(
        self, key: str, expected: str, low: int, high: int, *, required: bool
    ) -> int | None:
        """An integer (or a string of digits) in [low, high] at `key`."""
        raw = self.get(key)
        if raw is None and not required:
            return None
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
            digits = raw.strip().lstrip("0") or "0"
            value = int(digits) if len(digits) <= len(str(high)) else high + 1
        if value is None or not low <= value <= high:
            path = self.key_path(key)
            self.issues.error(_message(path, _found(raw), expected), path)
            return None
        return value

    def child(
        self, key: str, known: tuple[str, ...], expected: str, *, required: bool
    ) -> _Object | None:
        """The mapping at `key` as an `_Object`."""
        raw = self.get(key)
        if raw is None and not required:
            return None
        path = self.key_path(key)
        if not isinstance(raw, Mapping):
            self.issues.error(_message(path, _found(raw), expected), path)
            return None
        return _Object(cast("Mapping[object, object]", raw), path, known, self.issues)

    def text_list(self, key: str, expected: str) -> tuple[str, ...] | None:
        """A list of non-empty strings at `key` (required)."""
        raw = self.get(key)
        path = self.key_path(key)
        if not isinstance(raw, list) or not raw:
            self.issues.error(_message(path, _found(raw), expected), path)
            return None
        items: list[str] = []
        for index, item in enumerate(raw):
            if not isinstance(item, str) or not item.strip():
                item_path = join_index(path, index)
                self.issues.error(
                    _message(item_path, _found(item), "a non-empty string"), item_path
                )
            else:
                items.append(item)
        return tuple(items) if len(items) == len(raw) else None


# --- shared structure ---------------------------------------------------------------------------


def _document(
    data: object, issues: Issues, resource_type: str, property_keys: tuple[str, ...]
) -> tuple[_Object, str, _Object] | None:
    """Check `version` and find the single resource; returns (top, resource name, properties)."""
    if not isinstance(data, Mapping):
        issues.error(
            _message("(document)", _found(data), "a mapping with version, Resources and Hooks"), ""
        )
        return None
    top = _Object(cast("Mapping[object, object]", data), "", _TOP_KEYS, issues)
    version = top.get("version")
    if not (isinstance(version, int | float) and not isinstance(version, bool) and version == 0):
        path = top.key_path("version")
        issues.error(_message(path, _found(version), "0.0"), path)
    resources = top.get("Resources")
    path = top.key_path("Resources")
    if not isinstance(resources, list) or len(resources) != 1:
        found = f"{len(resources)} resources" if isinstance(resources, list) else _found(resources)
        issues.error(
            _message(path, found, f"a list holding exactly one resource of Type {resource_type}"),
            path,
        )
        return None
    item_path = join_index(path, 0)
    item = resources[0]
    if not isinstance(item, Mapping) or len(item) != 1:
        issues.error(
            _message(
                item_path, _found(item), "a one-key mapping: <resource name>: {Type, Properties}"
            ),
            item_path,
        )
        return None
    ((name_raw, body),) = cast("Mapping[object, object]", item).items()
    name = ruby_to_s(name_raw)
    body_path = join_key(item_path, name)
    if not isinstance(body, Mapping):
        issues.error(
            _message(body_path, _found(body), "a mapping with Type and Properties"), body_path
        )
        return None
    resource = _Object(cast("Mapping[object, object]", body), body_path, _RESOURCE_KEYS, issues)
    if resource.get("Type") != resource_type:
        type_path = resource.key_path("Type")
        issues.error(_message(type_path, _found(resource.get("Type")), resource_type), type_path)
    properties = resource.child(
        "Properties", property_keys, "a mapping of the resource's properties", required=True
    )
    if properties is None:
        return None
    return top, name, properties


def _hooks(top: _Object, events: tuple[str, ...], issues: Issues) -> list[tuple[str, str]] | None:
    raw = top.get("Hooks")
    if raw is None:
        return []
    path = top.key_path("Hooks")
    example = f"a list of one-key mappings such as '- {events[0]}: MyValidationFunction'"
    if not isinstance(raw, list):
        issues.error(_message(path, _found(raw), example), path)
        return None
    hooks: list[tuple[str, str]] = []
    errors_before = len(issues.errors)
    seen: set[str] = set()
    for index, item in enumerate(raw):
        item_path = join_index(path, index)
        if not isinstance(item, Mapping) or len(item) != 1:
            issues.error(_message(item_path, _found(item), example), item_path)
            continue
        ((event_raw, function),) = cast("Mapping[object, object]", item).items()
        event = ruby_to_s(event_raw)
        event_path = join_key(item_path, event)
        if event not in events:
            issues.error(
                _message(event_path, f"unknown hook {event!r}", f"one of {', '.join(events)}"),
                event_path,
            )
        elif event in seen:
            issues.error(
                _message(event_path, "hook given twice", "each hook at most once"), event_path
            )
        seen.add(event)
        if not isinstance(function, str) or not function.strip():
            issues.error(
                _message(event_path, _found(function), "the name or ARN of a Lambda function"),
                event_path,
            )
            continue
        hooks.append((event, function))
    return hooks if len(issues.errors) == errors_before else None


# --- Lambda -------------------------------------------------------------------------------------


def lambda_from_data(data: object, issues: Issues) -> LambdaAppSpec | None:
    """Decode a Lambda appspec, reporting to `issues`; None when it has errors."""
    errors_before = len(issues.errors)
    found = _document(data, issues, LAMBDA_TYPE, _LAMBDA_KEYS)
    if found is None:
        return None
    top, name, props = found
    function_name = props.text("Name", "the name of the Lambda function")
    alias = props.text("Alias", "the alias whose traffic shifts, such as live")
    current = _version(props, "CurrentVersion", "the version the alias points to now")
    target = _version(props, "TargetVersion", "the version to shift traffic to")
    hooks = _hooks(top, tuple(LambdaHookEvent), issues)
    if len(issues.errors) > errors_before or None in (function_name, alias, current, target, hooks):
        return None
    return LambdaAppSpec(
        version=0.0,
        function=LambdaFunction(
            resource_name=name,
            name=cast("str", function_name),
            alias=cast("str", alias),
            current_version=cast("str", current),
            target_version=cast("str", target),
        ),
        hooks=tuple(LambdaHook(LambdaHookEvent(e), f) for e, f in hooks or ()),
    )


def _version(props: _Object, key: str, what: str) -> str | None:
    number = props.integer(
        key, f'{what}: a positive integer version number such as "2"', 1, 2**63, required=True
    )
    return None if number is None else str(number)


# --- ECS ----------------------------------------------------------------------------------------


def ecs_from_data(data: object, issues: Issues) -> EcsAppSpec | None:
    """Decode an ECS appspec, reporting to `issues`; None when it has errors."""
    errors_before = len(issues.errors)
    found = _document(data, issues, ECS_TYPE, _ECS_KEYS)
    if found is None:
        return None
    top, name, props = found
    task_definition = props.text("TaskDefinition", "the ARN of the task definition to deploy")
    lb_info = _load_balancer_info(props)
    platform_version = props.text(
        "PlatformVersion", "a Fargate platform version such as LATEST", required=False
    )
    network = _network_configuration(props)
    strategy = _capacity_providers(props)
    hooks = _hooks(top, tuple(EcsHookEvent), issues)
    if len(issues.errors) > errors_before or None in (task_definition, lb_info, strategy, hooks):
        return None
    return EcsAppSpec(
        version=0.0,
        service=EcsService(
            resource_name=name,
            task_definition=cast("str", task_definition),
            load_balancer_info=cast("EcsLoadBalancerInfo", lb_info),
            platform_version=platform_version,
            network_configuration=network,
            capacity_provider_strategy=strategy or (),
        ),
        hooks=tuple(EcsHook(EcsHookEvent(e), f) for e, f in hooks or ()),
    )


def _load_balancer_info(props: _Object) -> EcsLoadBalancerInfo | None:
    info = props.child(
        "LoadBalancerInfo",
        ("ContainerName", "ContainerPort"),
        "a mapping with ContainerName and ContainerPort",
        required=True,
    )
    if info is None:
        return None
    container = info.text("ContainerName", "the name of a container in the task definition")
    port = info.integer(
        "ContainerPort", f"the container's port, 1 to {_MAX_PORT}", 1, _MAX_PORT, required=True
    )
    if container is None or port is None:
        return None
    return EcsLoadBalancerInfo(container, port)


def _network_configuration(props: _Object) -> EcsAwsVpcConfiguration | None:
    network = props.child(
        "NetworkConfiguration",
        ("AwsvpcConfiguration",),
        "a mapping with AwsvpcConfiguration",
        required=False,
    )
    if network is None:
        return None
    vpc = network.child(
        "AwsvpcConfiguration",
        ("Subnets", "SecurityGroups", "AssignPublicIp"),
        "a mapping with Subnets, SecurityGroups and AssignPublicIp",
        required=True,
    )
    if vpc is None:
        return None
    subnets = vpc.text_list("Subnets", "a non-empty list of subnet ids")
    groups = vpc.text_list("SecurityGroups", "a non-empty list of security group ids")
    public_ip = vpc.get("AssignPublicIp")
    if public_ip not in ("ENABLED", "DISABLED"):
        path = vpc.key_path("AssignPublicIp")
        vpc.issues.error(_message(path, _found(public_ip), "ENABLED or DISABLED"), path)
        return None
    if subnets is None or groups is None:
        return None
    return EcsAwsVpcConfiguration(subnets, groups, public_ip)


def _capacity_providers(props: _Object) -> tuple[EcsCapacityProvider, ...] | None:
    raw = props.get("CapacityProviderStrategy")
    if raw is None:
        return ()
    path = props.key_path("CapacityProviderStrategy")
    expected = "a list of mappings with CapacityProvider and optional Base and Weight"
    if not isinstance(raw, list):
        props.issues.error(_message(path, _found(raw), expected), path)
        return None
    items: list[EcsCapacityProvider] = []
    errors_before = len(props.issues.errors)
    for index, item_raw in enumerate(raw):
        item_path = join_index(path, index)
        if not isinstance(item_raw, Mapping):
            props.issues.error(_message(item_path, _found(item_raw), expected), item_path)
            continue
        item = _Object(
            cast("Mapping[object, object]", item_raw),
            item_path,
            ("Base", "CapacityProvider", "Weight"),
            props.issues,
        )
        provider = item.text("CapacityProvider", "the name of a capacity provider, such as FARGATE")
        base = item.integer("Base", "a number of tasks, 0 to 100000", 0, 100_000, required=False)
        weight = item.integer("Weight", "a relative weight, 0 to 1000", 0, 1000, required=False)
        if provider is not None:
            items.append(EcsCapacityProvider(provider, base, weight))
    return tuple(items) if len(props.issues.errors) == errors_before else None
