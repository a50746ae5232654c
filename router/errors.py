"""One JSON shape for every API error: {"error": "<code>", "detail": "<what to do>", ...}."""

import logging

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from router.database_outage import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, DatabaseUnavailable

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """A domain error with its own code and extra fields for the body."""

    def __init__(self, code: str, detail: str, status_code: int = status.HTTP_400_BAD_REQUEST, headers: dict[str, str] | None = None,
                 **extra) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code
        self.headers = headers or {}
        self.extra = extra


def error_body(exc: ApiError) -> dict:
    return {"error": exc.error_code, "detail": str(exc.detail), **exc.extra}


def database_unavailable(exc: Exception) -> ApiError:
    """503 for a call that needs the database while it cannot be reached (router.database_outage)."""
    if not isinstance(exc, DatabaseUnavailable):
        logger.warning("Database unavailable: %s: %s", exc.__class__.__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        exc = DatabaseUnavailable()
    return ApiError("database_unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _flatten(detail, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        messages = []
        for field, value in detail.items():
            name = f"{prefix}.{field}" if prefix else str(field)
            if field == "non_field_errors":
                name = prefix
            messages.extend(_flatten(value, name))
        return messages
    if isinstance(detail, list):
        messages = []
        for index, value in enumerate(detail):
            name = prefix if not isinstance(value, (dict, list)) else f"{prefix}[{index}]"
            messages.extend(_flatten(value, name))
        return messages
    return [f"{prefix}: {detail}" if prefix else str(detail)]


CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid_request",
}


def exception_handler(exc, context):
    if isinstance(exc, RecursionError):
        # The JSON parser recurses once per nesting level: "[[[[…" is a malformed body, not a server error.
        return Response({"error": "malformed_request", "detail": "JSON parse error - the document is nested too deeply."},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        exc = database_unavailable(exc)
    if isinstance(exc, ApiError):
        return Response(error_body(exc), status=exc.status_code, headers=exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((code for cls, code in CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        body = {"error": code, "detail": "; ".join(_flatten(exc.detail)), "fields": exc.detail}
    else:
        body = {"error": code, "detail": str(exc.detail)}
    response.data = body
    return response
