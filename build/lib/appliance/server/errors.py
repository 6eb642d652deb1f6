"""Every error, mapped to HTTP in one place: OpenAI's shape under /v1, one JSON shape elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "invalid_request_error", 405: "invalid_request_error",
                 413: "invalid_request_error", 415: "invalid_request_error",
                 429: "rate_limit_error"}


def openai_error_body(exc: ApplianceError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.code}}


def error_body(status: int, code: str, message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"status": status, "code": code, "message": message}}
    if detail:
        body["error"]["detail"] = detail
    return body


def _from_http_exception(exc: HTTPException) -> ApplianceError:
    status = exc.status_code
    message = str(exc.detail)
    param = None
    if isinstance(exc, ValidationException):
        problems = []
        for item in exc.extra or []:
            if isinstance(item, dict):
                key = item.get("key") or item.get("source") or ""
                problems.append(f"{key}: {item.get('message', '')}".strip(": "))
                param = param or item.get("key")
        message = "Invalid request body: " + ("; ".join(problems) or message)
    elif status == 400:
        message = (f"The request body could not be read ({message}). Send a valid JSON object "
                   "with Content-Type: application/json.")
    elif status == 413:
        message = "The request body is too large; shorten it or raise server.max_body_bytes."
    elif status == 405:
        message = f"{message}. Check the method in the API docs at /schema."
    error = ApplianceError(message, param=param, headers=getattr(exc, "headers", None))
    error.status = status
    error.kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    error.code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                  413: "body_too_large", 415: "unsupported_media_type"}.get(status, "http_error")
    return error


def handle_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApplianceError):
        error = exc
    elif isinstance(exc, HTTPException):
        error = _from_http_exception(exc)
    else:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = ApplianceError("Internal error; the server log has the details.")
    if request.url.path.startswith("/v1/"):
        content = openai_error_body(error)
    else:
        content = error_body(error.status, error.code, error.message)
    return Response(content=content, status_code=error.status, headers=error.headers or None)


exception_handlers = {Exception: handle_exception}
