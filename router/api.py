"""REST API v1: thin views that validate, call a service, and shape the answer."""

import time
import uuid
from abc import ABC, abstractmethod
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from providers.models import LLMModel
from router import metrics, payloads, retries
from router import serializers as s
from router.answers import JsonAnswer, json_answer
from router.auth import AdminScope, ApiKeyAuthentication, Caller, PolicyAccess, ReadScope, RouteScope, UsageScope
from router.counters import CountersUnavailable, LedgerIncomplete, flush_ledger
from router.counters.connections import PoolExhausted
from router.counters.redis import ReplicasBehind
from router.counting import display_amount
from router.decisions import Contended, UnroutableRequest, decide, refusal
from router.engine import RouteRequest, UnknownChoice
from router.errors import ApiError
from router.exports import decisions_csv
from router.models import Decision, Policy, PolicyVersion
from router.payloads import Counted, Refusal, RouteAnswer, RoutedModel, UsageAnswer, UsageReport
from router.policy.apply import Author, apply_policy
from router.policy.document import dump_policy, parse_policy
from router.policy.export import export_policy
from router.policy.fields import PolicyError
from router.policy.plan import plan_policy
from router.policy.versions import UnknownVersion, version_document
from router.records import DecisionRecord, UsageRecord
from router.replica import replica_reads
from router.selectors import model_cooldowns, quota_status
from router.shapes import ModelRef, api_trace, catalog_model_ref, rfc3339
from router.snapshot import current_snapshot
from router.tuning import DEFAULT_DAYS, MAXIMUM_DAYS, TuningError, tune
from router.usage import UsageRejected, record_usage
from switchboard.vocabulary import Outcome

# The routing and usage bodies are a few hundred bytes; a policy document is larger.
MAX_CALL_BODY_BYTES = 64 * 1024
COST_PLACES = Decimal("0.000001")


class JSONOnly(DefaultContentNegotiation):
    """The API answers JSON whatever the Accept header says; parsing that header cost the hot path real time."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class KnownQueryParameters:
    """Refuses a query parameter the view does not take, as a body's unknown field is refused: a typo must
    not be silently ignored. A view takes its filters, its pagination's `page` and `query_parameters`."""

    query_parameters: tuple[str, ...] = ()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        known = set(self.query_parameters)
        if getattr(self, "paginator", None) is not None:
            known.add(self.paginator.page_query_param)
            self.paginator.check_page(request)
        if hasattr(self, "get_queryset"):
            for backend in self.filter_backends:
                if filterset_class := backend().get_filterset_class(self, self.get_queryset()):
                    known |= set(filterset_class.base_filters)
        if unknown := sorted(set(request.query_params) - known):
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise ApiError("invalid_request", f"Unknown query parameter {', '.join(repr(name[:40]) for name in unknown[:5])}: {takes}.")


class ApiView(KnownQueryParameters, APIView):
    max_body_bytes = MAX_CALL_BODY_BYTES
    content_negotiation_class = JSONOnly

    def initial(self, request, *args, **kwargs):
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise ApiError("payload_too_large", f"The request body is larger than {self.max_body_bytes} bytes.",
                           status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        super().initial(request, *args, **kwargs)


def counters_error(exc: Exception) -> ApiError:
    """503 when the counters cannot answer: Redis down with ROUTER_REDIS_DOWN=refuse, every connection of this
    process busy for a moment (retry in a second), or too few replicas holding what was counted (retry in a second)."""
    if isinstance(exc, PoolExhausted):
        return ApiError("counters_busy", f"{exc} Retry in a second.", status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    if isinstance(exc, ReplicasBehind):
        return ApiError("counters_unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    return ApiError("counters_unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)


def _refusal(decision: DecisionRecord) -> JsonAnswer:
    answer = refusal(decision)
    body = Refusal(error=answer.code, detail=answer.detail, reason=decision.reason, decision_id=decision.id, outcome=decision.outcome,
                   primary=catalog_model_ref(decision.primary_key), trace=api_trace(decision.trace), policy_version=decision.policy_version)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
    return json_answer(body, answer.status, headers=headers)


class RoutingCallView(ApiView, ABC):
    """The two calls made around every LLM call; also answered by router.wsgi.RoutingCalls,
    which calls the same `parse` and `respond`."""

    endpoint = ""

    def post(self, request):
        if request.META.get("CONTENT_LENGTH", "") in ("", "0"):
            # DRF reads no body as {}: which would be a call with every default, not the call that was meant.
            raise ApiError("invalid_request", "The request body is empty: send a JSON object ({} for every default).")
        return self.respond(self.parse(request.data), request.user).http_response()

    def respond(self, call: Any, caller: Caller) -> JsonAnswer:
        """`answer`, timed into switchboard_request_duration_seconds."""
        started = time.perf_counter()
        try:
            return self.answer(call, caller)
        finally:
            metrics.observe_answer_time(self.endpoint, time.perf_counter() - started)

    @abstractmethod
    def parse(self, data: Any) -> Any:
        """The call in a request body; raises a ValidationError (400) naming what is wrong."""

    @abstractmethod
    def answer(self, call: Any, caller: Caller) -> JsonAnswer:
        """The answer to a parsed call."""


@extend_schema_view(post=extend_schema(
    request=payloads.RouteBody,
    responses={200: RouteAnswer, 400: s.ErrorSerializer, 409: s.ErrorSerializer, 429: Refusal, 503: Refusal},
    summary="Which model, at which provider, under which id, right now",
))
class RouteView(RoutingCallView):
    permission_classes = [RouteScope]
    endpoint = "route"

    def parse(self, data: Any) -> tuple[RouteRequest, bool]:
        return payloads.route_request(data)

    def answer(self, call: tuple[RouteRequest, bool], caller: Caller) -> JsonAnswer:
        route_request, dry_run = call
        if route_request.request_id is None or dry_run:
            return self.decide(route_request, caller, dry_run)
        try:
            return retries.answer_once(caller.key_id, route_request, lambda decision_id: self.decide(route_request, caller, False, decision_id),
                                       decision_answer)
        except retries.RequestIdReused as exc:
            raise ApiError("request_id_reused", f"request_id {route_request.request_id!r}: {exc}", status.HTTP_409_CONFLICT) from exc
        except retries.RequestInProgress as exc:
            raise ApiError("request_in_progress", f"{exc} Retry in a second.", status.HTTP_503_SERVICE_UNAVAILABLE,
                           headers={"Retry-After": "1"}) from exc
        except PoolExhausted as exc:
            raise counters_error(exc) from exc

    def decide(self, route_request: RouteRequest, caller: Caller, dry_run: bool, decision_id: uuid.UUID | None = None) -> JsonAnswer:
        try:
            decision = decide(route_request, caller=caller.name, dry_run=dry_run, decision_id=decision_id)
        except UnroutableRequest as exc:
            stored = exc.decision
            raise unroutable_error(exc.cause.code, exc.cause.detail, exc.cause.valid, stored) from exc
        except UnknownChoice as exc:
            raise ApiError(exc.code, exc.detail, valid=exc.valid) from exc
        except (CountersUnavailable, PoolExhausted, ReplicasBehind) as exc:
            raise counters_error(exc) from exc
        except Contended as exc:
            raise ApiError("counters_busy", f"{exc} Retry in a second.", status.HTTP_503_SERVICE_UNAVAILABLE,
                           headers={"Retry-After": "1"}) from exc
        return decision_answer(decision, dry_run)


def unroutable_error(cause: str, detail: str, valid: list[str], stored: DecisionRecord | None) -> ApiError:
    """400 unroutable: what the policy lacks for the request (`cause`), what would make it routable, and the refusal stored
    for it (none past the caller's bound, router.decisions.UNROUTABLE_STORED_PER_MINUTE)."""
    return ApiError("unroutable", detail, cause=cause, valid=valid, outcome=Outcome.UNROUTABLE,
                    decision_id=str(stored.id) if stored else None, policy_version=stored.policy_version if stored else None)


def decision_answer(decision: DecisionRecord, dry_run: bool = False) -> JsonAnswer:
    """The answer to a routing request: the decision, or its refusal."""
    if decision.refused:
        return _refusal(decision)
    model = decision.model or current_snapshot().models[decision.model_key]
    return json_answer(RouteAnswer(
        decision_id=decision.id,
        outcome=decision.outcome,
        reason=decision.reason,
        model=RoutedModel(key=model.key, provider=model.provider, kind=model.provider_kind, base_url=model.base_url or None,
                          model_id=model.model_id, invoke_id=model.invoke_id, region=model.region or None),
        primary=ModelRef(model.key, model.provider) if decision.primary_key == model.key else catalog_model_ref(decision.primary_key),
        trace=api_trace(decision.trace),
        policy_version=decision.policy_version,
        dry_run=dry_run,
    ))


@extend_schema_view(post=extend_schema(
    request=UsageReport,
    responses={201: UsageAnswer, 200: UsageAnswer, 400: s.ErrorSerializer, 404: s.ErrorSerializer,
               409: s.ErrorSerializer},
    summary="Report what a call used (counted once per idempotency key)",
))
class UsageView(RoutingCallView):
    permission_classes = [UsageScope]
    endpoint = "usage"

    def parse(self, data: Any) -> UsageReport:
        return payloads.usage_report(data)

    def answer(self, call: UsageReport, caller: Caller) -> JsonAnswer:
        try:
            usage, created = record_usage(call, caller=caller.name)
        except UsageRejected as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            raise ApiError(exc.code, exc.detail, exc.status, headers=headers, **exc.extra) from exc
        except (PoolExhausted, ReplicasBehind) as exc:
            raise counters_error(exc) from exc
        return json_answer(usage_body(usage), status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def usage_body(report: UsageRecord) -> UsageAnswer:
    usage = report.usage
    return UsageAnswer(
        usage_id=report.id, created_at=report.created_at, model=ModelRef(report.model_key, report.provider_slug),
        decision_id=report.decision_id, answered_instead=report.answered_instead,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens, cache_write_input_tokens=usage.cache_write_input_tokens,
        cost_usd=f"{usage.cost_usd.quantize(COST_PLACES)}",
        counted=Counted(tokens=usage.counted_tokens, input_tokens=usage.counted_input_tokens, output_tokens=usage.counted_output_tokens),
        status=report.status, idempotency_key=report.idempotency_key, retry_after=report.retry_after,
        ratelimit_headers=report.ratelimit_headers,
    )


class QuotasView(KnownQueryParameters, generics.ListAPIView):
    permission_classes = [ReadScope]
    serializer_class = s.QuotaStatusSerializer
    filter_backends: list = []

    def list(self, request, *args, **kwargs):
        try:
            status_rows = quota_status()
        except (CountersUnavailable, PoolExhausted) as exc:
            raise counters_error(exc) from exc
        rows = []
        for row in status_rows:
            quota = row.quota
            rows.append({
                "quota_id": quota.id, "provider": quota.provider, "name": quota.name,
                "models": [{"key": key, "provider": quota.provider} for key in quota.model_keys],
                "metric": quota.metric, "window": quota.window, "reset": quota.reset,
                "limit": display_amount(quota, quota.limit), "soft_limit": display_amount(quota, quota.soft_limit),
                "used": display_amount(quota, row.used),
                "ratio": round(row.ratio, 6), "source": quota.source, "frees_at": rfc3339(row.frees_at),
                "forecast": {"soft_at": rfc3339(row.soft_at), "hard_at": rfc3339(row.hard_at),
                             "burn_per_hour": display_amount(quota, row.burn_per_hour)},
            })
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class TuningView(ApiView):
    """The soft limits' tuning over the last `days` days (router.tuning)."""

    permission_classes = [ReadScope]
    query_parameters = ("days",)

    @extend_schema(parameters=[OpenApiParameter("days", {"type": "integer", "minimum": 1, "maximum": MAXIMUM_DAYS},
                                                description=f"The period in days, default {DEFAULT_DAYS}")],
                   responses={200: s.TuningSerializer})
    def get(self, request):
        days = request.query_params.get("days", str(DEFAULT_DAYS))
        try:
            # Judged on whole minutes up to the last whole minute, over days: a replica seconds behind changes nothing.
            with replica_reads():
                results = tune(int(days) if days.isascii() and days.isdigit() else -1)
        except TuningError as exc:
            raise ApiError("invalid_request", str(exc)) from exc
        return Response(s.TuningSerializer({"days": int(days), "results": results}).data)


class ModelsView(KnownQueryParameters, generics.ListAPIView):
    permission_classes = [ReadScope]
    serializer_class = s.ModelCatalogSerializer
    queryset = LLMModel.objects.select_related("provider").order_by("key")
    filterset_fields = ["enabled", "availability"]

    def get_serializer_context(self) -> dict:
        return super().get_serializer_context() | {"cooldowns": model_cooldowns()}


class ClearNotFoundView(ApiView):
    """Brings a model a real call reported not found back into routing (availability unknown until the next refresh),
    as the admin's action does; a model not reported not found is left as it is."""

    permission_classes = [AdminScope]

    @extend_schema(request=None, responses={200: s.ModelCatalogSerializer, 404: s.ErrorSerializer},
                   summary="Bring back a model a call reported not found")
    def post(self, request, key: str):
        model = LLMModel.objects.select_related("provider").filter(key=key).first()
        if model is None:
            raise ApiError("not_found", f"No model {key[:100]!r}.", status.HTTP_404_NOT_FOUND)
        LLMModel.clear_not_found([model.key], by=f"API key '{request.user.name}'")
        model.refresh_from_db()
        return Response(s.ModelCatalogSerializer(model, context={"cooldowns": model_cooldowns()}).data)


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC here so the database never sees an offset or a year it refuses."""

    def to_python(self, value):
        parsed = super().to_python(value)
        try:
            return parsed.astimezone(UTC) if parsed else parsed
        except OverflowError as exc:
            raise ValidationError("Enter a time between years 1 and 9999 in UTC.") from exc


class UTCDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class DecisionFilter(filters.FilterSet):
    outcome = filters.ChoiceFilter(choices=Outcome.choices)
    category = filters.CharFilter()
    model = filters.CharFilter(field_name="model_key")
    provider = filters.CharFilter(field_name="provider_slug")
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Decision
        fields = ["outcome", "category", "model", "provider", "since", "until"]


# Reads the primary, never the read replica (router.replica): a replica could still miss the rows flush_ledger() has
# just written, and this list holds every decision answered before the request.
class DecisionsView(KnownQueryParameters, generics.ListAPIView):
    query_parameters = ("format",)
    permission_classes = [ReadScope]
    serializer_class = s.DecisionSerializer
    queryset = Decision.objects.order_by("-created_at")
    filterset_class = DecisionFilter

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["json", "csv"], description="csv exports every match")])
    def get(self, request, *args, **kwargs):
        try:
            flush_ledger()  # the audit holds every decision answered before this request, or answers 503
        except LedgerIncomplete as exc:
            raise ApiError("ledger_incomplete", f"{exc} Retry in a few seconds.", status.HTTP_503_SERVICE_UNAVAILABLE,
                           headers={"Retry-After": "5"}) from exc
        if request.query_params.get("format") == "csv":
            return decisions_csv(self.filter_queryset(self.get_queryset()))
        if request.query_params.get("format") not in (None, "json"):
            raise ApiError("invalid_request", "format must be json or csv.")
        return super().get(request, *args, **kwargs)


YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


def _version_number(request) -> int | None:
    """The `version` query parameter: a stored policy version's number, or None when absent."""
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError("invalid_request", "version must be a policy version number, e.g. version=12.")
    return int(raw)


def _stored_version(number: int) -> dict:
    try:
        return version_document(number)
    except UnknownVersion as exc:
        raise ApiError("unknown_version", str(exc), status.HTTP_404_NOT_FOUND) from exc


class PolicyView(ApiView):
    """The whole policy, for an API key with the admin scope or a logged-in user of the admin (CSRF token for a PUT)."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [PolicyAccess]
    query_parameters = ("format", "plan", "version", "comment")
    max_body_bytes = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    parser_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "yaml"]),
                    OpenApiParameter("version", {"type": "integer", "minimum": 1},
                                     description="A stored policy version instead of the current policy")],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The whole policy in the policy file format"),
                   404: s.ErrorSerializer},
    )
    def get(self, request):
        if request.query_params.get("format") not in (None, "json", "yaml"):
            raise ApiError("invalid_request", "format must be json or yaml.")
        if "comment" in request.query_params:
            raise ApiError("invalid_request", "comment is taken by a PUT only.")
        number = _version_number(request)
        document = export_policy() if number is None else _stored_version(number)
        wants_yaml = request.query_params.get("format") == "yaml" or any(t in request.META.get("HTTP_ACCEPT", "") for t in YAML_TYPES)
        if wants_yaml:
            return HttpResponse(dump_policy(document, "yaml"), content_type="application/yaml")
        return Response(document)

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT, "application/yaml": OpenApiTypes.OBJECT},
        parameters=[OpenApiParameter("plan", str, enum=["true", "false"],
                                     description="true: answer what the document would change (changes), and change nothing"),
                    OpenApiParameter("version", {"type": "integer", "minimum": 1},
                                     description="Restore this stored policy version (a rollback, as a new version) instead of a document; "
                                                 "send no body"),
                    OpenApiParameter("comment", {"type": "string", "maxLength": 500}, description="Why: kept in the policy history")],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="{changed, policy_version}; with plan=true also changes: "
                                        "[{change: added|removed|changed, kind, name, fields: {name: {old, new}}}]"),
                   400: s.ErrorSerializer, 404: s.ErrorSerializer},
    )
    def put(self, request):
        number = _version_number(request)
        planning = request.query_params.get("plan")
        if planning not in (None, "true", "false"):
            raise ApiError("invalid_request", "plan must be true or false.")
        comment = request.query_params.get("comment", "")
        if len(comment) > 500 or not comment.isprintable():
            raise ApiError("invalid_request", "comment must be printable text of at most 500 characters.")
        caller = request.user
        author = Author(f"API key '{caller.name}'") if isinstance(caller, Caller) else Author(caller.get_username(), caller)
        try:
            if number is None:
                fmt = self.format(request)
                document, source = parse_policy(self.text(request), fmt), PolicyVersion.Source.API
            else:
                if request.body:
                    raise ApiError("invalid_request", "A rollback (version=N) takes no body: the stored version is the document.")
                document, source = _stored_version(number), PolicyVersion.Source.ROLLBACK
                comment = comment or f"rollback to version {number}"
            if planning == "true":
                changes = plan_policy(document, author)
                return Response({"changed": bool(changes), "changes": [change.as_dict() for change in changes],
                                 "policy_version": Policy.current().version})
            changed = apply_policy(document, author, source, comment)
        except PolicyError as exc:
            raise ApiError("invalid_policy", "; ".join(exc.problems), problems=exc.problems) from exc
        return Response({"changed": changed, "policy_version": Policy.current().version})

    @staticmethod
    def format(request) -> str:
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type == "application/json":
            return "json"
        if content_type in YAML_TYPES:
            return "yaml"
        raise ApiError("unsupported_media_type", "Send the policy as application/json or application/yaml.",
                       status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)

    @staticmethod
    def text(request) -> str:
        try:
            return request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError("malformed_request", "The policy must be UTF-8 text.") from exc
