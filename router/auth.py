"""API key authentication (Authorization: Bearer <key>) and per-scope permissions.

Verified keys are remembered in the process for ROUTER_POLICY_RECHECK_SECONDS, so the hot path does
not query the database on every request while a revocation still takes effect within seconds.
`last_used_at` is written at most once a minute per key, to spare a write per request.
"""

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from router import database_outage
from router.database_outage import DATABASE_ERRORS, DatabaseUnavailable
from router.models import ApiKey
from router.policy import sections
from switchboard.vocabulary import Scope

LAST_USED_WRITE_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """The authenticated service, as views see it (request.user)."""

    key_id: str
    name: str
    scopes: frozenset[str]

    is_authenticated = True

    def __str__(self) -> str:
        return self.name


# sha256 of the key -> (trusted until, the caller or None for an unknown key, when the database last said so).
_cache: dict[str, tuple[float, Caller | None, float]] = {}
_cache_lock = threading.Lock()
_last_used_written: dict[str, float] = {}


def _lookup(raw_key: str) -> Caller | None:
    try:
        api_key = ApiKey.objects.get_from_key(raw_key)
    except ApiKey.DoesNotExist:
        return None
    if api_key.has_expired or api_key.revoked:
        return None
    return Caller(key_id=api_key.id, name=api_key.name, scopes=frozenset(api_key.scopes))


def _touch(caller: Caller) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(caller.key_id, -1e9) < LAST_USED_WRITE_INTERVAL.total_seconds():
        return
    _last_used_written[caller.key_id] = now
    # A convenience for the admin: when the database cannot take it, it is written again a minute later.
    with contextlib.suppress(*DATABASE_ERRORS):
        ApiKey.objects.filter(id=caller.key_id).update(last_used_at=timezone.now())


def caller_for_key(raw_key: str) -> Caller | None:
    """The key's caller, None for an unknown, revoked or expired key.

    While the database cannot be reached, what it last said about this key, for ROUTER_DATABASE_DOWN_SECONDS
    after it said it; a key this process has not verified in that time raises DatabaseUnavailable. The
    database is asked again every ROUTER_POLICY_RECHECK_SECONDS, so a revocation applies as soon as it answers.
    """
    digest = hashlib.sha256(raw_key.encode()).hexdigest()
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached and cached[0] > now:
        caller = cached[1]
    else:
        try:
            caller, verified_at = _lookup(raw_key), now
            database_outage.outage.end()
        except DATABASE_ERRORS as exc:
            database_outage.outage.begin()
            if cached is None or not database_outage.still_trusted(cached[2]):
                raise DatabaseUnavailable("The database cannot be reached to verify this API key.") from exc
            caller, verified_at = cached[1], cached[2]
        with _cache_lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (now + settings.ROUTER_POLICY_RECHECK_SECONDS, caller, verified_at)
    if caller:
        _touch(caller)
    return caller


def forget_cached_keys() -> None:
    _cache.clear()
    _last_used_written.clear()


def bearer_key(header: str) -> str | None:
    """The key in an 'Authorization: Bearer <key>' header, or None if the header is not that."""
    keyword, _, raw_key = header.partition(" ")
    return raw_key.strip() if keyword.lower() == "bearer" and raw_key.strip() else None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw_key = bearer_key(header)
        if raw_key is None:
            raise exceptions.AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
        caller = caller_for_key(raw_key)
        if caller is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.")
        return caller, None

    def authenticate_header(self, request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the Bearer key in the OpenAPI schema (drf-spectacular finds it by its target class)."""

    target_class = "router.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key made by `manage.py create_api_key`."}


class _HasScope(permissions.BasePermission):
    scope = ""

    def has_permission(self, request, view) -> bool:
        caller = request.user
        if not isinstance(caller, Caller):
            raise exceptions.NotAuthenticated("Send an API key as 'Authorization: Bearer <key>'.")
        if self.scope not in caller.scopes:
            raise exceptions.PermissionDenied(f"This API key lacks the '{self.scope}' scope.")
        return True


class RouteScope(_HasScope):
    scope = Scope.ROUTE


class UsageScope(_HasScope):
    scope = Scope.USAGE


class ReadScope(_HasScope):
    scope = Scope.READ


class AdminScope(_HasScope):
    scope = Scope.ADMIN


# The policy's objects, each of which an editor of the whole policy may view, add, change and delete.
POLICY_MODELS = ("providers.provider", "providers.llmmodel", "providers.quota", "router.category", "router.route", "router.routemodel",
                 "router.routeescalation", "router.tier", "router.tiermodel", "router.tierescalation", "router.policy")


def _permissions(actions: tuple[str, ...]) -> list[str]:
    labels = (*POLICY_MODELS, *(section.model_label for section in sections.registered()))
    return [f"{app}.{action}_{model}" for app, model in (name.split(".") for name in labels) for action in actions]


class PolicyAccess(permissions.BasePermission):
    """GET and PUT /api/v1/policy: an API key with the admin scope, or a logged-in user who may view (GET) or
    edit (PUT) every object of the policy, as the groups `policy viewers` and `policy editors` may."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, Caller):
            return AdminScope().has_permission(request, view)
        if not (user and user.is_authenticated):
            raise exceptions.NotAuthenticated("Send an API key with the admin scope as 'Authorization: Bearer <key>', or log in.")
        reading = request.method in permissions.SAFE_METHODS
        if not user.has_perms(_permissions(("view",) if reading else ("view", "add", "change", "delete"))):
            raise exceptions.PermissionDenied(f"Your account may not {'read' if reading else 'change'} the whole policy.")
        return True

