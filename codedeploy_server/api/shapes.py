"""Request validation and response shaping from botocore's model of CodeDeploy.

Input: members the model does not know are dropped (a newer SDK may send them), null members
are absent ones, timestamps become epoch-second floats; botocore's own
`ParamValidator` then checks types, required members and minimums; a second pass checks what
it leaves out (maximum lengths, patterns, enums, integers that are booleans). Each failure
becomes the CodeDeploy exception for the top-level member it concerns (`applicationName` ->
`ApplicationNameRequiredException` / `InvalidApplicationNameException`, ...), else
`InvalidInputException`, with a message in AWS's validation style naming the member and the
constraint.

Output: only members of the output shape are kept, recursively, and `None` values dropped, so
private document keys (`_groupId`, `_location`, ...) and anything else the model does not know
never reach a client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

from botocore.loaders import Loader  # type: ignore[import-untyped,unused-ignore]
from botocore.model import OperationModel, ServiceModel, Shape  # type: ignore[import-untyped,unused-ignore]
from botocore.validate import ParamValidator  # type: ignore[import-untyped,unused-ignore]

from codedeploy_server.api import errors as e

Params = dict[str, Any]
ErrorPair = tuple[type[e.CodeDeployError], type[e.CodeDeployError]]

#: Top-level member -> (exception when it is missing, exception when it is invalid).
_MEMBER_ERRORS: Final[dict[str, ErrorPair]] = {
    "applicationName": (e.ApplicationNameRequiredException, e.InvalidApplicationNameException),
    "newApplicationName": (
        e.ApplicationNameRequiredException,
        e.InvalidApplicationNameException,
    ),
    "applicationNames": (e.ApplicationNameRequiredException, e.InvalidApplicationNameException),
    "deploymentGroupName": (
        e.DeploymentGroupNameRequiredException,
        e.InvalidDeploymentGroupNameException,
    ),
    "currentDeploymentGroupName": (
        e.DeploymentGroupNameRequiredException,
        e.InvalidDeploymentGroupNameException,
    ),
    "newDeploymentGroupName": (
        e.DeploymentGroupNameRequiredException,
        e.InvalidDeploymentGroupNameException,
    ),
    "deploymentGroupNames": (
        e.DeploymentGroupNameRequiredException,
        e.InvalidDeploymentGroupNameException,
    ),
    "deploymentConfigName": (
        e.DeploymentConfigNameRequiredException,
        e.InvalidDeploymentConfigNameException,
    ),
    "deploymentId": (e.DeploymentIdRequiredException, e.InvalidDeploymentIdException),
    "deploymentIds": (e.DeploymentIdRequiredException, e.InvalidDeploymentIdException),
    "instanceName": (e.InstanceNameRequiredException, e.InvalidInstanceNameException),
    "instanceNames": (e.InstanceNameRequiredException, e.InvalidInstanceNameException),
    "instanceId": (e.InstanceIdRequiredException, e.InvalidInstanceNameException),
    "instanceIds": (e.InstanceIdRequiredException, e.InvalidInstanceNameException),
    "targetId": (e.DeploymentTargetIdRequiredException, e.InvalidDeploymentTargetIdException),
    "targetIds": (e.DeploymentTargetIdRequiredException, e.InvalidDeploymentTargetIdException),
    "revision": (e.RevisionRequiredException, e.InvalidRevisionException),
    "revisions": (e.RevisionRequiredException, e.InvalidRevisionException),
    "serviceRoleArn": (e.RoleRequiredException, e.InvalidRoleException),
    "ResourceArn": (e.ResourceArnRequiredException, e.InvalidArnException),
    "Tags": (e.TagRequiredException, e.InvalidTagsToAddException),
    "TagKeys": (e.TagRequiredException, e.InvalidTagsToAddException),
    "tags": (e.TagRequiredException, e.InvalidTagException),
    "description": (e.InvalidInputException, e.InvalidInputException),
    "minimumHealthyHosts": (
        e.InvalidMinimumHealthyHostValueException,
        e.InvalidMinimumHealthyHostValueException,
    ),
    "computePlatform": (e.InvalidComputePlatformException, e.InvalidComputePlatformException),
    "fileExistsBehavior": (
        e.InvalidFileExistsBehaviorException,
        e.InvalidFileExistsBehaviorException,
    ),
    "deploymentStyle": (e.InvalidDeploymentStyleException, e.InvalidDeploymentStyleException),
    "autoRollbackConfiguration": (
        e.InvalidAutoRollbackConfigException,
        e.InvalidAutoRollbackConfigException,
    ),
    "alarmConfiguration": (e.InvalidAlarmConfigException, e.InvalidAlarmConfigException),
    "overrideAlarmConfiguration": (
        e.InvalidAlarmConfigException,
        e.InvalidAlarmConfigException,
    ),
    "triggerConfigurations": (e.InvalidTriggerConfigException, e.InvalidTriggerConfigException),
    "onPremisesInstanceTagFilters": (e.InvalidTagException, e.InvalidTagException),
    "onPremisesTagSet": (e.InvalidTagException, e.InvalidTagException),
    "ec2TagFilters": (e.InvalidEC2TagException, e.InvalidEC2TagException),
    "ec2TagSet": (e.InvalidEC2TagException, e.InvalidEC2TagException),
    "autoScalingGroups": (
        e.InvalidAutoScalingGroupException,
        e.InvalidAutoScalingGroupException,
    ),
    "ec2DeploymentOptions": (
        e.InvalidAutoScalingGroupProcessToSuspendException,
        e.InvalidAutoScalingGroupProcessToSuspendException,
    ),
    "targetInstances": (e.InvalidTargetInstancesException, e.InvalidTargetInstancesException),
    "loadBalancerInfo": (e.InvalidLoadBalancerInfoException, e.InvalidLoadBalancerInfoException),
    "blueGreenDeploymentConfiguration": (
        e.InvalidBlueGreenDeploymentConfigurationException,
        e.InvalidBlueGreenDeploymentConfigurationException,
    ),
    "ecsServices": (e.InvalidECSServiceException, e.InvalidECSServiceException),
    "trafficRoutingConfig": (
        e.InvalidTrafficRoutingConfigurationException,
        e.InvalidTrafficRoutingConfigurationException,
    ),
    "zonalConfig": (
        e.InvalidZonalDeploymentConfigurationException,
        e.InvalidZonalDeploymentConfigurationException,
    ),
    "registrationStatus": (
        e.InvalidRegistrationStatusException,
        e.InvalidRegistrationStatusException,
    ),
    "tagFilters": (e.InvalidTagFilterException, e.InvalidTagFilterException),
    "sortBy": (e.InvalidSortByException, e.InvalidSortByException),
    "sortOrder": (e.InvalidSortOrderException, e.InvalidSortOrderException),
    "s3Bucket": (e.InvalidBucketNameFilterException, e.InvalidBucketNameFilterException),
    "s3KeyPrefix": (e.InvalidKeyPrefixFilterException, e.InvalidKeyPrefixFilterException),
    "deployed": (e.InvalidDeployedStateFilterException, e.InvalidDeployedStateFilterException),
    "nextToken": (e.InvalidNextTokenException, e.InvalidNextTokenException),
    "NextToken": (e.InvalidNextTokenException, e.InvalidNextTokenException),
    "createTimeRange": (e.InvalidTimeRangeException, e.InvalidTimeRangeException),
    "includeOnlyStatuses": (
        e.InvalidDeploymentStatusException,
        e.InvalidDeploymentStatusException,
    ),
    "instanceStatusFilter": (e.InvalidInstanceStatusException, e.InvalidInstanceStatusException),
    "instanceTypeFilter": (e.InvalidInstanceTypeException, e.InvalidInstanceTypeException),
    "targetFilters": (e.InvalidTargetFilterNameException, e.InvalidTargetFilterNameException),
    "deploymentWaitType": (
        e.InvalidDeploymentWaitTypeException,
        e.InvalidDeploymentWaitTypeException,
    ),
    "iamUserArn": (e.InvalidIamUserArnException, e.InvalidIamUserArnException),
    "iamSessionArn": (e.InvalidIamSessionArnException, e.InvalidIamSessionArnException),
    "ignoreApplicationStopFailures": (
        e.InvalidIgnoreApplicationStopFailuresValueException,
        e.InvalidIgnoreApplicationStopFailuresValueException,
    ),
    "updateOutdatedInstancesOnly": (
        e.InvalidUpdateOutdatedInstancesOnlyValueException,
        e.InvalidUpdateOutdatedInstancesOnlyValueException,
    ),
    "externalId": (e.InvalidExternalIdException, e.InvalidExternalIdException),
}
_DEFAULT_ERRORS: Final[ErrorPair] = (e.InvalidInputException, e.InvalidInputException)
_JSON_TYPES: Final = {
    "<class 'str'>": "a string",
    "<class 'int'>": "an integer",
    "<class 'bool'>": "a boolean",
    "<class 'float'>": "a number",
    "<class 'decimal.Decimal'>": "a number",
    "<class 'dict'>": "an object",
    "<class 'list'>": "a list",
    "<class 'tuple'>": "a list",
    "<class 'datetime.datetime'>": "a timestamp (epoch seconds)",
    "timestamp-string": "an ISO 8601 timestamp",
}
_PATH_HEAD = re.compile(r"[^.\[ ]+")
_MIN_EPOCH: Final = 0.0
_MAX_EPOCH: Final = 253402300799.0  # 9999-12-31T23:59:59Z


@cache
def service_model() -> ServiceModel:
    """botocore's model of the CodeDeploy API (loaded once)."""
    data = Loader().load_service_model("codedeploy", "service-2")
    return ServiceModel(data, service_name="codedeploy")


def operation_model(name: str) -> OperationModel | None:
    """The operation's model, or None when the API has no such operation."""
    model = service_model()
    if name not in model.operation_names:
        return None
    return model.operation_model(name)


def validate_input(operation: OperationModel, params: Mapping[str, Any]) -> Params:
    """`params` with unknown members dropped, or the CodeDeploy exception naming what is wrong."""
    shape: Shape | None = operation.input_shape
    if shape is None:
        return {}
    cleaned: Params = _prune(shape, dict(params), "")
    report = ParamValidator().validate(cleaned, shape)
    if report.has_errors():
        reason, name, details = report._errors[0]  # structured errors, not the text
        raise _validation_error(reason, name, details)
    _check_constraints(shape, cleaned, "")
    return cleaned


def shape_output(operation: OperationModel, result: Mapping[str, Any]) -> Params:
    """`result` reduced to the members of the operation's output shape."""
    shape: Shape | None = operation.output_shape
    if shape is None:
        return {}
    shaped = _shape(shape, result)
    return shaped if isinstance(shaped, dict) else {}


def _prune(shape: Shape, value: Any, path: str) -> Any:
    """Unknown members dropped; timestamps made epoch-second floats (or refused)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            key: _prune(shape.members[key], item, _join(path, key))
            for key, item in value.items()
            # A null member is an absent one (as AWS's JSON services read it).
            if key in shape.members and item is not None
        }
    if kind == "list" and isinstance(value, list):
        return [_prune(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {key: _prune(shape.value, item, _join(path, key)) for key, item in value.items()}
    if kind == "timestamp" and value is not None:
        return _timestamp(value, path)
    return value


def _timestamp(value: Any, path: str) -> float:
    """An epoch-second float from a JSON number or an ISO 8601 string (botocore's own check
    raises RuntimeError/OverflowError on absurd values, so it never sees them)."""
    epoch: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        epoch = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            epoch = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if epoch is None or not _MIN_EPOCH <= epoch <= _MAX_EPOCH:
        raise _invalid(
            path,
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must be a "
            "timestamp (epoch seconds, or ISO 8601) between 1970 and 9999",
        )
    return epoch


def _shape(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            return None
        shaped = {}
        for key, item in value.items():
            member = shape.members.get(key)
            if member is None or item is None:
                continue
            converted = _shape(member, item)
            if converted is not None:
                shaped[key] = converted
        return shaped
    if kind == "list":
        if not isinstance(value, list | tuple):
            return None
        return [c for c in (_shape(shape.member, item) for item in value) if c is not None]
    if kind == "map":
        if not isinstance(value, Mapping):
            return None
        return {str(k): _shape(shape.value, v) for k, v in value.items() if v is not None}
    return value


def _check_constraints(shape: Shape, value: Any, path: str) -> None:
    """What ParamValidator leaves out: max lengths, patterns, enums, booleans as integers."""
    kind = shape.type_name
    if kind == "structure":
        for key, item in value.items():
            _check_constraints(shape.members[key], item, _join(path, key))
    elif kind == "list":
        for index, item in enumerate(value):
            _check_constraints(shape.member, item, f"{path}[{index}]")
    elif kind == "map":
        for key, item in value.items():
            _check_constraints(shape.key, key, f"{path}.key")
            _check_constraints(shape.value, item, _join(path, key))
    elif kind == "string":
        _check_string(shape, value, path)
    elif kind in ("integer", "long") and isinstance(value, bool):
        raise _invalid(
            path,
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: "
            "Member must be an integer",
        )


def _check_string(shape: Shape, value: str, path: str) -> None:
    metadata = shape.metadata
    maximum = metadata.get("max")
    if maximum is not None and len(value) > maximum:
        raise _invalid(
            path,
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must have "
            f"length less than or equal to {maximum}",
        )
    pattern = metadata.get("pattern")
    if pattern is not None and not _regex(pattern).fullmatch(value):
        raise _invalid(
            path,
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: {pattern}",
        )
    enum = shape.enum
    if enum and value not in enum:
        raise _invalid(
            path,
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must "
            f"satisfy enum value set: [{', '.join(enum)}]",
        )


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _validation_error(reason: str, name: str, details: Mapping[str, Any]) -> e.CodeDeployError:
    parent = name.lstrip(".")
    if reason == "missing required field":
        path = _join(parent, str(details["required_name"]))
        required, _ = _errors_for(path)
        return required(
            f"Value null at '{path}' failed to satisfy constraint: Member must not be null"
        )
    path = parent or "input"
    value = details.get("param")
    if reason == "invalid type":
        wanted = " or ".join(
            dict.fromkeys(_JSON_TYPES.get(t, t) for t in details.get("valid_types", ()))
        )
        message = (
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must be "
            f"{wanted}"
        )
    elif reason == "invalid length":
        # ParamValidator reports the length, not the value.
        message = (
            f"Value at '{path}' failed to satisfy constraint: Member must have length greater "
            f"than or equal to {details.get('min_allowed')}"
        )
    elif reason == "invalid range":
        message = (
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must have "
            f"value greater than or equal to {details.get('min_allowed')}"
        )
    else:
        message = f"Value at '{path}' is invalid ({reason})"
    return _invalid(path, message)


def _invalid(path: str, message: str) -> e.CodeDeployError:
    _, invalid = _errors_for(path)
    return invalid(message)


def _errors_for(path: str) -> ErrorPair:
    head = _PATH_HEAD.match(path)
    return _MEMBER_ERRORS.get(head.group(0) if head else "", _DEFAULT_ERRORS)


def _join(parent: str, member: str) -> str:
    return f"{parent}.{member}" if parent else member


def _show(value: Any) -> str:
    """A value for a message: JSON, cut at 100 characters (the client sent it anyway)."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."
