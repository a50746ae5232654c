"""POST /api/v1/route and /api/v1/usage, answered ahead of the rest of the middleware and URL routing.

These two are called around every LLM call. Only SecurityMiddleware runs before this one (HTTPS
redirect, security headers): the rest of the chain, URL resolution and DRF's request and response
objects cost more than the decision itself (docs/performance.md).

A call takes this path only when the view would take it as it is:
- a JSON body within the size limit;
- a Bearer key with the endpoint's scope;
- fields that validate.

Anything else goes on down the chain to the view and DRF, which answer it as they answer every
other endpoint. Both paths call the view's `parse(data)`, which validates the body into a call, and
its `respond(call, caller)`, which runs the service and returns the response (timed).
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.exceptions import ValidationError

from router.api import RouteView, RoutingCallView, UsageView, json_response
from router.auth import Caller, bearer_key, caller_for_key
from router.database_outage import DATABASE_UNAVAILABLE
from router.errors import ApiError, database_unavailable, error_body

JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


class RoutingCallMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.views: dict[str, RoutingCallView] = {reverse("api-route"): RouteView(), reverse("api-usage"): UsageView()}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info) if request.method == "POST" else None
        if view is None:
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it further down
        try:
            caller = _caller(request, view)
            call = _call(request, view) if caller else None
            response = view.respond(call, caller) if call is not None else None
        except DATABASE_UNAVAILABLE as exc:
            exc = database_unavailable(exc)
            response = json_response(error_body(exc), exc.status_code, headers=exc.headers)
        except ApiError as exc:
            response = json_response(error_body(exc), exc.status_code, headers=exc.headers)
        if response is None:
            return self.get_response(request)
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response


def _caller(request: HttpRequest, view: RoutingCallView) -> Caller | None:
    """The key's caller, if the request is a JSON POST within the size limit, without a query string, whose key
    has the view's scope."""
    meta = request.META
    length = meta.get("CONTENT_LENGTH", "")
    if meta.get("CONTENT_TYPE", "").lower() not in JSON_TYPES or not length.isdigit() or int(length) > view.max_body_bytes:
        return None
    if meta.get("QUERY_STRING"):
        return None  # these calls take no query parameters: DRF refuses them
    raw_key = bearer_key(meta.get("HTTP_AUTHORIZATION", ""))
    caller = caller_for_key(raw_key) if raw_key else None
    return caller if caller and view.permission_classes[0].scope in caller.scopes else None


def _call(request: HttpRequest, view: RoutingCallView) -> Any:
    """The view's call, decoded from the body; None if DRF should answer it (and its error): the view parses
    the body again as DRF reads it, and refuses it the same way."""
    try:
        return view.parse(request.body)
    except (ValidationError, ApiError):
        return None
