"""The FDI/APIG error catalogue: every error that reaches the wire is one of these.

Layer: bottom (stdlib only). The api renders `FdiError` as `{"error_code", "error_msg",
"request_id"}` with the class's HTTP status; nothing else decides a wire code.
"""

from __future__ import annotations

from typing import ClassVar


class FdiError(Exception):
    """An error with a ROMA-compatible wire code. Raise subclasses only."""

    code: ClassVar[str] = "FDI.9999"
    status: ClassVar[int] = 500
    template: ClassVar[str] = "System error."

    def __init__(self, message: str | None = None, **params: object) -> None:
        self.params = params
        self.message = message if message is not None else self.template.format(**params)
        super().__init__(self.message)


class InvalidParameters(FdiError):
    code = "FDI.3002"
    status = 400
    template = "Invalid parameters: {detail}"


class ConnectivityTestFailed(FdiError):
    code = "FDI.3016"
    status = 400
    template = "Failed to test the data source connectivity: {detail}"


class TaskAlreadyRunning(FdiError):
    code = "FDI.3023"
    status = 400
    template = "One or more tasks are running."


class TaskStartFailed(FdiError):
    code = "FDI.3026"
    status = 400
    template = "Failed to start the task: {detail}"


class TaskStopFailed(FdiError):
    code = "FDI.3027"
    status = 400
    template = "Failed to stop the task: {detail}"


class InvalidParameter(FdiError):
    """A single named parameter is wrong (the FDI.3033 form)."""

    code = "FDI.3033"
    status = 400
    template = "Invalid parameter [{name}]. {detail}"


class MappingInvalid(FdiError):
    """A composite task's table mapping that does not fit its task or its tables."""

    code = "FDI.3037"
    status = 400
    template = (
        "The parameter in mapping information is invalid or does not match the task. {detail}"
    )


class ProjectMismatch(FdiError):
    code = "FDI.3039"
    status = 400
    template = "The project ID is empty or does not match the project ID in the URL."


class NetworkSegmentRefused(FdiError):
    """A data source address outside the networks openfdi may reach (an API data source's
    host resolving into OPENFDI_API_DENIED_NETWORKS, or outside OPENFDI_API_ALLOWED_NETWORKS)."""

    code = "FDI.3043"
    status = 400
    template = "The data source IP address is not in the valid network segment: {detail}"


class TaskNotFound(FdiError):
    code = "FDI.3081"
    status = 404
    template = "The task does not exist."


class DispatchNotFound(FdiError):
    """No scheduled plan where one is needed (single task)."""

    code = "FDI.3083"
    status = 404
    template = "One or more scheduled tasks are not configured with scheduled plans."


class TaskIdEmpty(FdiError):
    code = "FDI.3149"
    status = 400
    template = "The task ID is empty."


class TaskListEmpty(FdiError):
    code = "FDI.3150"
    status = 400
    template = "The task list is empty."


class DatasourceNotFound(FdiError):
    """ROMA documents no code for this; openfdi answers the FDI.3033 form with 404."""

    code = "FDI.3033"
    status = 404
    template = "Invalid parameter [datasource_id]. The data source does not exist."


class TaskDeleteFailed(FdiError):
    code = "FDI.3028"
    status = 400
    template = "Failed to delete the task: {detail}"


class InstanceNotFound(FdiError):
    code = "ROMA.00110002"
    status = 404
    template = "The instance does not exist. project_id: {project_id}, instance_id: {instance_id}"


class SystemError_(FdiError):
    code = "FDI.9999"
    status = 500
    template = "System error."


# --- APIG gateway errors: authentication and routing, before any FDI logic runs.


class AuthenticationFailed(FdiError):
    code = "APIG.0301"
    status = 401
    template = "Incorrect IAM authentication information: {detail}"


class TokenMustBeUpdated(FdiError):
    code = "APIG.0307"
    status = 401
    template = "The token must be updated."


class ApiNotFound(FdiError):
    code = "APIG.0101"
    status = 404
    template = "The API does not exist or has not been published in the environment."


class MethodNotAllowed(FdiError):
    code = "APIG.0101"
    status = 404
    template = "The API does not exist."


class RequestError(FdiError):
    code = "APIG.0201"
    status = 400
    template = "API request error."


class RequestTooLarge(FdiError):
    code = "APIG.0201"
    status = 413
    template = "Request entity too large."


class NotAuthorized(FdiError):
    code = "APIG.0302"
    status = 403
    template = "The IAM user is not authorized to access the API."


class SignInThrottled(FdiError):
    """Too many failed password sign-ins for the user name or from the client address.

    APIG answers 429 APIG.0308 when a throttling threshold is reached (fdi-api.md D); ROMA
    documents no code of its own for a locked sign-in.
    """

    code = "APIG.0308"
    status = 429
    template = (
        "The throttling threshold has been reached: too many failed sign-ins, "
        "try again in {seconds} seconds."
    )


CATALOGUE: tuple[type[FdiError], ...] = (
    InvalidParameters,
    DatasourceNotFound,
    TaskDeleteFailed,
    ConnectivityTestFailed,
    TaskAlreadyRunning,
    TaskStartFailed,
    TaskStopFailed,
    InvalidParameter,
    ProjectMismatch,
    TaskNotFound,
    DispatchNotFound,
    TaskIdEmpty,
    TaskListEmpty,
    InstanceNotFound,
    SystemError_,
    AuthenticationFailed,
    TokenMustBeUpdated,
    ApiNotFound,
    MethodNotAllowed,
    RequestError,
    RequestTooLarge,
    NotAuthorized,
    SignInThrottled,
)
