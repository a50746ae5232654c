"""POST /api/v1/route and /api/v1/usage, answered before Django's request handling.

These two are called around every LLM call. Django's handler (its request and response cycle, its
signals, the middleware chain, URL resolution) and DRF cost more than the decision itself
(docs/performance.md), so this WSGI middleware answers them first, when the view would take the call
as it is:
- a Host that ALLOWED_HOSTS accepts, over HTTPS when SECURE_SSL_REDIRECT asks for it;
- a JSON body within the size limit, and no query string;
- a Bearer key with the endpoint's scope;
- fields that validate.

Anything else goes on to Django, where the view and DRF answer it as they answer every other
endpoint. Both paths call the view's `parse(data)`, which validates the body into a call, and its
`respond(call, caller)`, which runs the service and returns the response (timed). The answers here
carry the headers Django's SecurityMiddleware and XFrameOptionsMiddleware add to every answer, and
Django's request signals are sent around each (its database connections are looked after on them).
"""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.signals import request_finished, request_started, setting_changed
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from router.api import RouteView, RoutingCallView, UsageView, json_response
from router.auth import Caller, bearer_key, caller_for_key
from router.database_outage import DATABASE_UNAVAILABLE
from router.errors import ApiError, database_unavailable, error_body, server_error

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
# The headers Django's middleware adds to every answer, by whether the request came over HTTPS; cleared when a test
# changes the settings they come from.
_added_headers: dict[bool, list[tuple[str, str]]] = {}


class RoutingCalls:
    """WSGI middleware: answers the routing calls and usage reports the views would take as they are; hands on the rest."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.views: dict[str, RoutingCallView] = {reverse("api-route"): RouteView(), reverse("api-usage"): UsageView()}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        view = self.views.get(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if view is None:
            return self.app(environ, start_response)
        secure = _is_secure(environ)
        if not _takes(environ, view, secure):
            return self.app(environ, start_response)
        request_started.send(sender=self.__class__, environ=environ)
        try:
            response = self._answer(environ, view)
        except Exception:
            response = server_error(_Request(environ, secure))
        finally:
            request_finished.send(sender=self.__class__)
        if response is None:
            return self.app(environ, start_response)
        headers = list(response.items())
        headers += [(name, value) for name, value in _headers_added(secure) if name not in response]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return [response.content]

    @staticmethod
    def _answer(environ: dict, view: RoutingCallView) -> HttpResponse | None:
        """The view's answer, or None when Django should answer instead (the body put back for it)."""
        try:
            caller = _caller(environ, view)
            if caller is None:
                return None
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            call = _call(body, view)
            if call is None:
                environ["wsgi.input"] = io.BytesIO(body)
                return None
            return view.respond(call, caller)
        except DATABASE_UNAVAILABLE as exc:
            exc = database_unavailable(exc)
            return json_response(error_body(exc), exc.status_code, headers=exc.headers)
        except ApiError as exc:
            return json_response(error_body(exc), exc.status_code, headers=exc.headers)


def _is_secure(environ: dict) -> bool:
    """HttpRequest.is_secure(), read from the environ."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _takes(environ: dict, view: RoutingCallView, secure: bool) -> bool:
    """Whether the request is one to answer here: a JSON body within the size limit, no query string, a Host
    ALLOWED_HOSTS accepts (else Django answers 400), over HTTPS if SECURE_SSL_REDIRECT (else Django redirects)."""
    length = environ.get("CONTENT_LENGTH", "")
    if environ.get("CONTENT_TYPE", "").lower() not in JSON_TYPES or not length.isdigit() or int(length) > view.max_body_bytes:
        return False
    if environ.get("QUERY_STRING") or (settings.SECURE_SSL_REDIRECT and not secure):
        return False  # these calls take no query parameters: DRF refuses them
    host = environ.get("HTTP_X_FORWARDED_HOST" if settings.USE_X_FORWARDED_HOST else "HTTP_HOST", "")
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


def _caller(environ: dict, view: RoutingCallView) -> Caller | None:
    """The key's caller, if the key has the view's scope."""
    raw_key = bearer_key(environ.get("HTTP_AUTHORIZATION", ""))
    caller = caller_for_key(raw_key) if raw_key else None
    return caller if caller and view.permission_classes[0].scope in caller.scopes else None


def _call(body: bytes, view: RoutingCallView) -> Any:
    """The view's call, decoded from the body; None if DRF should answer it (and its error): the view parses
    the body again as DRF reads it, and refuses it the same way."""
    try:
        return view.parse(body)
    except (ValidationError, ApiError):
        return None


def _headers_added(secure: bool) -> list[tuple[str, str]]:
    """What Django's SecurityMiddleware and XFrameOptionsMiddleware add to an answer, found by running them on one."""
    if secure not in _added_headers:
        response, request = HttpResponse(), _Request({}, secure)
        before = set(response.headers)
        SecurityMiddleware(lambda _: response).process_response(request, response)
        XFrameOptionsMiddleware(lambda _: response).process_response(request, response)
        _added_headers[secure] = [(name, value) for name, value in response.items() if name not in before]
    return _added_headers[secure]


def _forget_added_headers(**kwargs) -> None:
    _added_headers.clear()


setting_changed.connect(_forget_added_headers)


class _Request(HttpRequest):
    """A request as Django's middleware and error handler read one answered here: its method, its path, and whether
    it came over HTTPS."""

    def __init__(self, environ: dict, secure: bool) -> None:
        super().__init__()
        self.method = environ.get("REQUEST_METHOD")
        self.path = self.path_info = environ.get("PATH_INFO", "")
        self.secure = secure

    def is_secure(self) -> bool:
        return self.secure
