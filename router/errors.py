"""One JSON shape for every API error: {"error": "<code>", "detail": "<what to do>", ...}.

DRF's errors come through `exception_handler`; what Django answers itself under /api/ (a bad Host
header, an unknown path, an unexpected exception) through the error views below, which keep
Django's own pages everywhere else. Errors are written as plain JSON whatever the view renders
otherwise (the OpenAPI schema is YAML, the interactive docs HTML).
"""

import logging
import sys
import uuid

import orjson
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views import defaults
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from router import metrics
from router.database_outage import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, DatabaseUnavailable

logger = logging.getLogger(__name__)
API_PREFIX = "/api/"


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


def json_error(body: dict, status_code: int, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status_code, headers=headers, content_type="application/json")


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


# Headers DRF's handler sets on an error answer that the JSON written in its place keeps.
KEPT_HEADERS = ("WWW-Authenticate", "Retry-After")


def exception_handler(exc, context) -> HttpResponse | None:
    if isinstance(exc, RecursionError):
        # The JSON parser recurses once per nesting level: "[[[[…" is a malformed body, not a server error.
        return json_error({"error": "malformed_request", "detail": "JSON parse error - the document is nested too deeply."},
                          status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        exc = database_unavailable(exc)
    if isinstance(exc, ApiError):
        return json_error(error_body(exc), exc.status_code, exc.headers)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django answers it with server_error below
    code = next((code for cls, code in CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        body = {"error": code, "detail": "; ".join(_flatten(exc.detail)), "fields": exc.detail}
    else:
        body = {"error": code, "detail": str(exc.detail)}
    return json_error(body, response.status_code, {name: response[name] for name in KEPT_HEADERS if name in response})


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 (a Host header not in ALLOWED_HOSTS, a body past DATA_UPLOAD_MAX_MEMORY_SIZE, ...)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        return json_error({"error": "invalid_host", "detail": "The Host header names a host this server does not serve."},
                          status.HTTP_400_BAD_REQUEST)
    if isinstance(exception, RequestDataTooBig):
        return json_error({"error": "payload_too_large", "detail": "The request body is larger than this server takes."},
                          status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return json_error({"error": "bad_request", "detail": "The request could not be read."}, status.HTTP_400_BAD_REQUEST)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return json_error({"error": "forbidden", "detail": "You do not have permission to perform this action."},
                      status.HTTP_403_FORBIDDEN)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return not_found(request)


def not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Unknown paths under /api/ answer in the API's error shape, not with Django's HTML page."""
    return json_error({"error": "not_found", "detail": f"No API endpoint at {request.path[:200]}."}, status.HTTP_404_NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """An unexpected exception: counted, logged with an error id, answered with that id (under /api/, as JSON).

    A Redis command or script error (anything but Redis being out of reach, router.counters) is one of
    these: a bug to fix, never a reason to count elsewhere.
    """
    exc = sys.exc_info()[1]
    metrics.count_server_error("redis" if isinstance(exc, RedisError) else "internal")
    if not _is_api(request):
        return defaults.server_error(request)
    error_id = uuid.uuid4().hex
    logger.error("Internal server error %s: %s %s", error_id, request.method, request.path, exc_info=sys.exc_info())
    response = json_error({"error": "internal_error", "detail": f"The server failed to answer; quote error id {error_id} "
                                                                "when reporting it.", "error_id": error_id},
                          status.HTTP_500_INTERNAL_SERVER_ERROR)
    response._has_been_logged = True  # the line above is the log line, with the id: Django need not write its own
    return response
