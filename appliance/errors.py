"""The appliance's exceptions. Each carries an HTTP status and a message that says what to do."""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class: `status` is the HTTP status, `code` a stable machine-readable name."""

    status = 500
    code = "internal_error"
    kind = "server_error"  # OpenAI's error "type"

    def __init__(self, message: str, *, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class ConfigError(ApplianceError):
    code = "invalid_config"


class InvalidRequest(ApplianceError):
    status = 400
    code = "invalid_request"
    kind = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class NotFound(ApplianceError):
    status = 404
    code = "not_found"
    kind = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class QueueFull(ApplianceError):
    status = 429
    code = "queue_full"
    kind = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class NotReady(ApplianceError):
    status = 503
    code = "not_ready"
    kind = "server_error"

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class MonitoringDisabled(ApplianceError):
    status = 503
    code = "monitoring_disabled"

    def __init__(self):
        super().__init__("Monitoring is off; set monitoring.enabled = true "
                         "(APPLIANCE_MONITORING__ENABLED=true) and restart the appliance.")


class EngineError(ApplianceError):
    status = 500
    code = "engine_error"


class EngineFailed(ApplianceError):
    """The generation engine stopped working; it restarts on its own, so retrying soon helps."""

    status = 503
    code = "engine_failed"
    kind = "server_error"

    def __init__(self, message: str, *, retry_after: int = 2):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class DiskFull(ApplianceError):
    """A write found the disk full; what was committed before stays intact."""

    status = 507
    code = "disk_full"


class ModelLoadError(ApplianceError):
    code = "model_load_failed"


class AuthenticationRequired(ApplianceError):
    status = 401
    code = "authentication_required"
    kind = "authentication_error"

    def __init__(self, message: str = "Log in, or send an API key as `Authorization: Bearer <key>` "
                 "(an admin creates keys with `appliance keys create`)."):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="appliance"'})


class PermissionDenied(ApplianceError):
    status = 403
    code = "permission_denied"
    kind = "permission_error"


class Conflict(ApplianceError):
    status = 409
    code = "conflict"
    kind = "invalid_request_error"


class TooManyLogins(ApplianceError):
    status = 429
    code = "too_many_logins"
    kind = "rate_limit_error"

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed logins; try again in {retry_after} s or ask an admin to "
                         "reset the password.", headers={"Retry-After": str(retry_after)})


class DirectoryUnavailable(ApplianceError):
    """The LDAP directory could not answer (unreachable, TLS, service account, settings)."""

    status = 503
    code = "directory_unavailable"
