"""Errors the API answers with: CodeDeploy's exception names, as the JSON 1.1 protocol sends them.

Every class is named exactly as the `__type` boto3 reads (`ClientError.response["Error"]
["Code"]`), so a grep for an AWS error name finds where we raise it. The wire format is
`{"__type": "<Name>", "message": "..."}` with the class's HTTP status (400 unless noted).
The message says what is wrong and how to fix it (AWS's text where it is known).
"""

# Class names are CodeDeploy's wire names, which end in "Exception", not "Error":
# ruff: noqa: N818

from __future__ import annotations

from typing import ClassVar


class CodeDeployError(Exception):
    """Root: an error a client caused (or a server failure) answered as a JSON error body."""

    #: The HTTP status of the answer.
    status: ClassVar[int] = 400
    #: The `__type` of the answer; the class name unless a subclass says otherwise.
    code: ClassVar[str] = "CodeDeployError"

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "code" not in cls.__dict__:
            cls.code = cls.__name__

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON error document."""
        return {"__type": self.code, "message": self.message}


# --- Authentication and protocol -------------------------------------------------------------
#
# HTTP status: 400, like every other client error here, and deliberately not the 403 of AWS's
# generic "Common Errors" page. That page lists the Query-protocol errors (MissingAuthentication-
# Token, InvalidClientTokenId, as STS, IAM or EC2 return them, with XML bodies). CodeDeploy uses
# the JSON 1.1 protocol, where these errors have the `...Exception` names below and the status
# is 400. CodeDeploy itself answers an unknown key with "Status Code: 400; Error Code:
# UnrecognizedClientException" (an AWS SDK for Java log in
# github.com/JetBrains/teamcity-aws-codedeploy-plugin/issues/25). DynamoDB's error reference
# lists MissingAuthenticationTokenException, IncompleteSignatureException and
# UnrecognizedClientException under "HTTP status code 400", and Kinesis, ECR and ECS log
# "InvalidSignatureException: Signature expired ... status code: 400". boto3 reads the
# `__type`, not the status, so only raw HTTP clients see a difference. They get what CodeDeploy
# sends. tests/server/api/test_error_statuses.py pins these statuses.


class MissingAuthenticationTokenException(CodeDeployError):
    """The request has no `Authorization` header (an unsigned request)."""


class IncompleteSignatureException(CodeDeployError):
    """The `Authorization` header is malformed or lacks a required part (date, host...)."""


class InvalidSignatureException(CodeDeployError):
    """The signature does not match, the date is out of tolerance, or the scope is wrong."""


class UnrecognizedClientException(CodeDeployError):
    """The access key id is not one of the server's credentials."""


class UnknownOperationException(CodeDeployError):
    """`X-Amz-Target` names no CodeDeploy operation."""


class SerializationException(CodeDeployError):
    """The body is not a JSON object."""


class InternalFailure(CodeDeployError):
    """The server failed (database down, a bug): details are in the server's log."""

    status = 500


# --- Names and ids ---------------------------------------------------------------------------


class ApplicationNameRequiredException(CodeDeployError):
    """An operation needs `applicationName` and it is missing or empty."""


class InvalidApplicationNameException(CodeDeployError):
    """An application name is too long or uses characters outside `[A-Za-z0-9+=,.@_-]`."""


class DeploymentGroupNameRequiredException(CodeDeployError):
    """An operation needs a deployment group name and it is missing."""


class InvalidDeploymentGroupNameException(CodeDeployError):
    """A deployment group name is malformed (or a rename is refused while a deployment runs)."""


class DeploymentConfigNameRequiredException(CodeDeployError):
    """An operation needs `deploymentConfigName` and it is missing."""


class InvalidDeploymentConfigNameException(CodeDeployError):
    """A config name is malformed, reserved (`CodeDeployDefault.`) or names a built-in to delete."""


class DeploymentIdRequiredException(CodeDeployError):
    """An operation needs a deployment id and it is missing."""


class InvalidDeploymentIdException(CodeDeployError):
    """A deployment id is not `d-` followed by 9 upper-case letters or digits."""


class InstanceNameRequiredException(CodeDeployError):
    """An operation needs an on-premises instance name and it is missing."""


class InvalidInstanceNameException(CodeDeployError):
    """An on-premises instance name is not a valid thing name."""


class InstanceIdRequiredException(CodeDeployError):
    """A deprecated DeploymentInstance operation got no instance id."""


class DeploymentTargetIdRequiredException(CodeDeployError):
    """A DeploymentTarget operation got no target id."""


class InvalidDeploymentTargetIdException(CodeDeployError):
    """A target id is malformed."""


class ResourceArnRequiredException(CodeDeployError):
    """A tagging operation got no `ResourceArn`."""


class InvalidArnException(CodeDeployError):
    """A resource ARN is malformed or belongs to another region or account."""


class ArnNotSupportedException(CodeDeployError):
    """A well-formed ARN names a resource type this server cannot tag."""


class InvalidNextTokenException(CodeDeployError):
    """`nextToken` is not one this server returned for the same listing."""


class InvalidInputException(CodeDeployError):
    """Input that fits no more specific exception is malformed."""


class BatchLimitExceededException(CodeDeployError):
    """A batch operation names more items than it accepts."""


class DescriptionTooLongException(CodeDeployError):
    """A description is longer than 256 characters."""


# --- Applications ----------------------------------------------------------------------------


class ApplicationAlreadyExistsException(CodeDeployError):
    """CreateApplication/UpdateApplication with a name already taken."""


class ApplicationDoesNotExistException(CodeDeployError):
    """The named application does not exist."""


class ApplicationLimitExceededException(CodeDeployError):
    """More than 1000 applications."""


class InvalidComputePlatformException(CodeDeployError):
    """A compute platform other than `Server` (this server deploys to on-premises hosts only)."""


class InvalidTagsToAddException(CodeDeployError):
    """Resource tags (TagResource, CreateApplication/Group `tags`) are malformed or too many."""


# --- Deployment groups -----------------------------------------------------------------------


class DeploymentGroupAlreadyExistsException(CodeDeployError):
    """CreateDeploymentGroup/UpdateDeploymentGroup with a group name already taken."""


class DeploymentGroupDoesNotExistException(CodeDeployError):
    """The named deployment group does not exist in the application."""


class DeploymentGroupLimitExceededException(CodeDeployError):
    """More than 1000 deployment groups in one application."""


class RoleRequiredException(CodeDeployError):
    """CreateDeploymentGroup without `serviceRoleArn`."""


class InvalidRoleException(CodeDeployError):
    """`serviceRoleArn` is not an IAM role ARN."""


class InvalidTagException(CodeDeployError):
    """An on-premises tag or tag filter is malformed."""


class InvalidEC2TagException(CodeDeployError):
    """EC2 tag filters were given (this server deploys to on-premises instances only)."""


class InvalidEC2TagCombinationException(CodeDeployError):
    """Both `ec2TagFilters` and `ec2TagSet` were given."""


class InvalidOnPremisesTagCombinationException(CodeDeployError):
    """Both `onPremisesInstanceTagFilters` and `onPremisesTagSet` were given."""


class TagSetListLimitExceededException(CodeDeployError):
    """A tag set has more than 3 tag groups."""


class InvalidAutoScalingGroupException(CodeDeployError):
    """Auto Scaling groups were given (not supported by this server)."""


class InvalidAutoScalingGroupProcessToSuspendException(CodeDeployError):
    """`ec2DeploymentOptions` names an unknown Auto Scaling process."""


class InvalidTriggerConfigException(CodeDeployError):
    """Trigger configurations were given (this server has no SNS to notify)."""


class InvalidAlarmConfigException(CodeDeployError):
    """An alarm configuration is malformed or enabled (no CloudWatch to poll)."""


class AlarmsLimitExceededException(CodeDeployError):
    """More than 10 alarms."""


class InvalidAutoRollbackConfigException(CodeDeployError):
    """Automatic rollback enabled with no events, or an unknown event."""


class InvalidDeploymentStyleException(CodeDeployError):
    """A deployment style other than IN_PLACE / WITHOUT_TRAFFIC_CONTROL."""


class InvalidBlueGreenDeploymentConfigurationException(CodeDeployError):
    """A blue/green configuration was given (in-place deployments only)."""


class InvalidLoadBalancerInfoException(CodeDeployError):
    """Load balancer information was given (no load balancer support)."""


class InvalidECSServiceException(CodeDeployError):
    """ECS services were given (Server platform only)."""


class InvalidTrafficRoutingConfigurationException(CodeDeployError):
    """A traffic routing config was given (Lambda/ECS only)."""


class InvalidInstanceTypeException(CodeDeployError):
    """An instance type filter value other than Blue or Green."""


# --- Deployment configs ----------------------------------------------------------------------


class DeploymentConfigAlreadyExistsException(CodeDeployError):
    """CreateDeploymentConfig with a name already taken."""


class DeploymentConfigDoesNotExistException(CodeDeployError):
    """The named deployment config does not exist."""


class DeploymentConfigInUseException(CodeDeployError):
    """DeleteDeploymentConfig of a config a group or a running deployment uses."""


class DeploymentConfigLimitExceededException(CodeDeployError):
    """More than 200 custom deployment configs."""


class InvalidMinimumHealthyHostValueException(CodeDeployError):
    """`minimumHealthyHosts` is missing or out of range."""


class InvalidZonalDeploymentConfigurationException(CodeDeployError):
    """A zonal config was given (not supported)."""


# --- Revisions -------------------------------------------------------------------------------


class RevisionRequiredException(CodeDeployError):
    """An operation needs a revision and it is missing."""


class InvalidRevisionException(CodeDeployError):
    """A revision location is malformed or of a type this server cannot deploy."""


class RevisionDoesNotExistException(CodeDeployError):
    """The revision is not registered with the application."""


class InvalidSortByException(CodeDeployError):
    """ListApplicationRevisions `sortBy` is not a known column."""


class InvalidSortOrderException(CodeDeployError):
    """ListApplicationRevisions `sortOrder` is not ascending/descending."""


class InvalidBucketNameFilterException(CodeDeployError):
    """ListApplicationRevisions `s3Bucket` is malformed."""


class InvalidKeyPrefixFilterException(CodeDeployError):
    """ListApplicationRevisions `s3KeyPrefix` is malformed."""


class BucketNameFilterRequiredException(CodeDeployError):
    """ListApplicationRevisions `s3KeyPrefix` without `s3Bucket`."""


class InvalidDeployedStateFilterException(CodeDeployError):
    """ListApplicationRevisions `deployed` is not include/exclude/ignore."""


# --- Deployments -----------------------------------------------------------------------------


class DeploymentDoesNotExistException(CodeDeployError):
    """No deployment has that id."""


class DeploymentLimitExceededException(CodeDeployError):
    """The group already has an active deployment (one at a time per group)."""


class DeploymentAlreadyCompletedException(CodeDeployError):
    """Stop/Continue of a deployment that has ended."""


class DeploymentIsNotInReadyStateException(CodeDeployError):
    """ContinueDeployment(READY_WAIT) of a deployment that is not Ready."""


class InvalidDeploymentWaitTypeException(CodeDeployError):
    """ContinueDeployment with a wait type other than READY_WAIT / TERMINATION_WAIT."""


class UnsupportedActionForDeploymentTypeException(CodeDeployError):
    """An operation meant for blue/green, Lambda or ECS deployments on an in-place one."""


class InvalidTargetInstancesException(CodeDeployError):
    """`targetInstances` is malformed (both tagFilters and ec2TagSet, ASGs, too many tags)."""


class InvalidFileExistsBehaviorException(CodeDeployError):
    """`fileExistsBehavior` is not DISALLOW, OVERWRITE or RETAIN."""


class InvalidIgnoreApplicationStopFailuresValueException(CodeDeployError):
    """`ignoreApplicationStopFailures` is not a boolean."""


class InvalidUpdateOutdatedInstancesOnlyValueException(CodeDeployError):
    """`updateOutdatedInstancesOnly` is not a boolean."""


class InvalidDeploymentStatusException(CodeDeployError):
    """A deployment status filter value is not a DeploymentStatus."""


class InvalidTimeRangeException(CodeDeployError):
    """`createTimeRange` starts after it ends."""


class InvalidExternalIdException(CodeDeployError):
    """`externalId` is malformed."""


# --- Targets and instances -------------------------------------------------------------------


class DeploymentTargetDoesNotExistException(CodeDeployError):
    """The target id is not a target of the deployment."""


class DeploymentTargetListSizeExceededException(CodeDeployError):
    """BatchGetDeploymentTargets with more than 25 target ids."""


class InstanceDoesNotExistException(CodeDeployError):
    """The instance is not a target of the deployment."""


class InvalidInstanceStatusException(CodeDeployError):
    """A target/instance status filter value is not a TargetStatus."""


class InvalidDeploymentInstanceTypeException(CodeDeployError):
    """A Blue/Green instance filter on an in-place deployment."""


class InvalidTargetFilterNameException(CodeDeployError):
    """A `targetFilters` key other than TargetStatus / ServerInstanceLabel."""


# --- On-premises instances -------------------------------------------------------------------


class InstanceNameAlreadyRegisteredException(CodeDeployError):
    """RegisterOnPremisesInstance with a name registered already."""


class InstanceNotRegisteredException(CodeDeployError):
    """The on-premises instance is not registered."""


class InstanceLimitExceededException(CodeDeployError):
    """Tag operations naming more instances than one call accepts."""


class IamArnRequiredException(CodeDeployError):
    """RegisterOnPremisesInstance without `iamUserArn` or `iamSessionArn`."""


class MultipleIamArnsProvidedException(CodeDeployError):
    """RegisterOnPremisesInstance with both `iamUserArn` and `iamSessionArn`."""


class InvalidIamUserArnException(CodeDeployError):
    """`iamUserArn` is not an IAM user ARN."""


class InvalidIamSessionArnException(CodeDeployError):
    """`iamSessionArn` is not an STS assumed-role session ARN."""


class IamUserArnAlreadyRegisteredException(CodeDeployError):
    """The IAM user ARN is registered with another instance."""


class IamSessionArnAlreadyRegisteredException(CodeDeployError):
    """The IAM session ARN is registered with another instance."""


class InvalidRegistrationStatusException(CodeDeployError):
    """`registrationStatus` is not Registered / Deregistered."""


class InvalidTagFilterException(CodeDeployError):
    """ListOnPremisesInstances `tagFilters` is malformed."""


class TagRequiredException(CodeDeployError):
    """A tag operation got no tags."""


class TagLimitExceededException(CodeDeployError):
    """An instance would carry more tags than allowed."""


# --- Operations this server does not offer ---------------------------------------------------


class OperationNotSupportedException(CodeDeployError):
    """GitHub account connections: the agents use their own GitHub credentials."""


class GitHubAccountTokenDoesNotExistException(CodeDeployError):
    """DeleteGitHubAccountToken: this server holds no GitHub connections."""


class InvalidLifecycleEventHookExecutionIdException(CodeDeployError):
    """PutLifecycleEventHookExecutionStatus: there are no Lambda/ECS hooks on this server."""


def error_codes() -> frozenset[str]:
    """Every `__type` this module can answer with."""
    found: set[str] = set()
    pending: list[type[CodeDeployError]] = [CodeDeployError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found.add(sub.code)
            pending.append(sub)
    return frozenset(found)
