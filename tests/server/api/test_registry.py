"""The API covers botocore's whole CodeDeploy model, and answers only with known error names."""

from __future__ import annotations

from codedeploy_server.api.errors import error_codes
from codedeploy_server.api.operations import OPERATIONS
from codedeploy_server.api.shapes import service_model

#: AWS's common errors (authentication, protocol, server failure), not in the service model.
COMMON = {
    "IncompleteSignatureException",
    "InternalFailure",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "SerializationException",
    "UnknownOperationException",
    "UnrecognizedClientException",
}


def test_every_model_operation_has_a_handler() -> None:
    """Each of the model's operations is answered, and nothing else is."""
    assert set(OPERATIONS) == set(service_model().operation_names)


def test_error_names_are_codedeploys_or_common() -> None:
    """Every exception the API can raise is in the model or one of AWS's common errors."""
    model = service_model()
    declared = {
        error.name
        for name in model.operation_names
        for error in model.operation_model(name).error_shapes
    }
    assert error_codes() - declared == COMMON
