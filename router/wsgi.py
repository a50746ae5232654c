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
`respond(call, caller)`, which runs the service and returns its answer (timed). The answers here
carry the headers Django's SecurityMiddleware and XFrameOptionsMiddleware add to every answer. Django's
`request_finished` is sent after a call that reached the database, whose connections are looked after on it
(router.database_use); most calls never do.
"""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.signals import request_finished, setting_changed
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from router import database_use
from router.answers import JsonAnswer, json_answer
from router.api import RouteView, RoutingCallView, UsageView
from router.auth import Caller, bearer_key, caller_for_key
from router.database_outage import DATABASE_UNAVAILABLE
from router.errors import ApiError, database_unavailable, error_body, server_error

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
# The headers Django's middleware adds to every answer, by whether the request came over HTTPS, and whether
# ALLOWED_HOSTS accepts a Host header, by header: both cleared when a test changes the settings they come from.
_added_headers: dict[bool, list[tuple[str, str]]] = {}
_allowed_hosts: dict[str, bool] = {}
HOSTS_REMEMBERED = 256


class RoutingCalls:
    """WSGI middleware: answers the routing calls and usage reports the views would take as they are; hands on the rest."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        database_use.watch_queries()
        self.views: dict[str, RoutingCallView] = {reverse("api-route"): RouteView(), reverse("api-usage"): UsageView()}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        view = self.views.get(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if view is None:
            return self.app(environ, start_response)
        secure = _is_secure(environ)
        if not _takes(environ, view, secure):
            return self.app(environ, start_response)
        database_use.clear()
        try:
            answer = self._answer(environ, view)
        except Exception:
            answer = _json_answer(server_error(_Request(environ, secure)))
        finally:
            if database_use.reached():
                request_finished.send(sender=self.__class__)
        if answer is None:
            return self.app(environ, start_response)
        headers = answer.wsgi_headers()
        own = {name.lower() for name in answer.headers} if answer.headers else ()
        headers += [(name, value) for name, value in _headers_added(secure) if name.lower() not in own]
        start_response(answer.wsgi_status(), headers)
        return [answer.content]

    @staticmethod
    def _answer(environ: dict, view: RoutingCallView) -> JsonAnswer | None:
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
            return json_answer(error_body(exc), exc.status_code, exc.headers)
        except ApiError as exc:
            return json_answer(error_body(exc), exc.status_code, exc.headers)


def _json_answer(response: HttpResponse) -> JsonAnswer:
    """A JSON HttpResponse (router.errors.server_error's) as the answers here are written: its own headers kept, the
    body's type and length written by JsonAnswer."""
    own = {name: value for name, value in response.items() if name.lower() not in ("content-type", "content-length")}
    return JsonAnswer(response.status_code, response.content, own)


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
    return _host_allowed(environ.get("HTTP_X_FORWARDED_HOST" if settings.USE_X_FORWARDED_HOST else "HTTP_HOST", ""))


def _host_allowed(host: str) -> bool:
    """Whether ALLOWED_HOSTS accepts the Host header, as HttpRequest.get_host() checks it; remembered per header."""
    allowed = _allowed_hosts.get(host)
    if allowed is None:
        domain, _ = split_domain_port(host)
        patterns = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        allowed = bool(domain) and validate_host(domain, patterns)
        if len(_allowed_hosts) >= HOSTS_REMEMBERED:  # the caller chooses the header: what is remembered stays bounded
            _allowed_hosts.clear()
        _allowed_hosts[host] = allowed
    return allowed


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


def _forget_what_settings_gave(**kwargs) -> None:
    _added_headers.clear()
    _allowed_hosts.clear()


setting_changed.connect(_forget_what_settings_gave)


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
