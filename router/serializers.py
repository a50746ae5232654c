"""Request validation and response shapes of the REST API."""

import re
from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers.models import MODEL_KEY, LLMModel
from router.errors import ApiError
from router.models import Decision, UsageEvent
from router.shapes import api_trace, catalog_model_ref, model_ref
from switchboard.validators import invisible_character
from switchboard.vocabulary import COUNTED_OUTCOMES, REQUEST_COMPLEXITIES, Outcome, ProviderKind, RefusalCode, SkipReason, UsageStatus, Verdict

# A single LLM call above this many tokens is a mistake, not a request (the largest context windows are ~2M).
MAX_TOKENS_PER_CALL = 10_000_000
MAX_RATELIMIT_HEADERS = 50
# A route has a handful of models; a longer list to pass over is a mistake.
MAX_EXCLUDED = 50
# No task is tried a thousand times: a larger attempt is a mistake.
MAX_ATTEMPT = 1000
MAX_REQUEST_ID = 200
CACHE_READ_OVER_INPUT = "The cache reads are part of the input: at most estimated_input_tokens."
# An HTTP header name (RFC 9110 token); also keeps NUL, which PostgreSQL's jsonb refuses, out of the stored headers.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be sent as a JSON number, not a string or a boolean."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float) or (isinstance(data, float) and not data.is_integer()):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string that must be sent as a JSON string, not a number, of printable characters (switchboard.validators)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if problem := invisible_character(value):
            raise serializers.ValidationError(problem[0].upper() + problem[1:] + ".")
        return value


class StrictUUIDField(serializers.UUIDField):
    """A UUID that must be sent as a string, not an integer."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class NamedChoiceField(serializers.ChoiceField):
    """A choice refused like an unknown category or tier: `unknown_<field>`, naming the valid values."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            valid = list(self.choices)
            raise ApiError(f"unknown_{self.field_name}", f"Unknown {self.field_name} {data!r}. Valid: {', '.join(valid)}.",
                           valid=valid) from None


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo is an error instead of being ignored."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            known = ", ".join(sorted(self.fields))
            raise serializers.ValidationError({name: [f"Unknown field. Known fields: {known}."] for name in unknown})
        return super().to_internal_value(data)


def _tokens(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=MAX_TOKENS_PER_CALL, **kwargs)


class RouteRequestSerializer(StrictSerializer):
    """The body of POST /route, for the OpenAPI schema; router.payloads validates it."""

    category = StrictCharField(max_length=64, required=False)
    complexity = NamedChoiceField(choices=list(REQUEST_COMPLEXITIES), default="medium")
    tier = StrictCharField(max_length=64, required=False)
    estimated_input_tokens = _tokens(default=0)
    estimated_output_tokens = _tokens(default=0, help_text="The most the call may produce: the max_tokens the service will send.")
    estimated_cache_read_tokens = _tokens(default=0, help_text="The part of the input the service expects the provider's prompt cache "
                                                               "to hold (Anthropic's input limit does not count it).")
    exclude = serializers.ListField(
        child=StrictCharField(max_length=100, validators=[MODEL_KEY]), max_length=MAX_EXCLUDED, required=False,
        help_text="Model keys the service has just seen fail for this task: passed over with reason `excluded`.",
    )
    attempt = StrictIntegerField(min_value=1, max_value=MAX_ATTEMPT, default=1,
                                 help_text="The how-manieth try of the same task: past the route's escalate_after it escalates, "
                                           "past its max_attempts it is refused with 429 attempts_exhausted.")
    dry_run = StrictBooleanField(default=False)
    request_id = StrictCharField(
        max_length=MAX_REQUEST_ID, required=False,
        help_text="Any printable text naming this request: a retry with the same request_id within an hour answers the "
                  "same decision, counted once; another body under it answers 409 request_id_reused.",
    )

    def validate(self, attrs):
        if attrs.get("category") and attrs.get("tier"):
            raise serializers.ValidationError("Name either a category or a tier, not both.")
        if attrs["estimated_cache_read_tokens"] > attrs["estimated_input_tokens"]:
            raise serializers.ValidationError({"estimated_cache_read_tokens": [CACHE_READ_OVER_INPUT]})
        return attrs


class NullIfBlankCharField(serializers.CharField):
    """Text that is null when absent, never an empty string."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value):
        return super().to_representation(value) if value else None


class ModelRefSerializer(serializers.Serializer):
    """A model, as every answer names it (docs/api.md)."""

    key = serializers.CharField()
    provider = serializers.CharField(allow_null=True, help_text="The provider's slug; null only for a model no longer in the catalog.")


class RoutedModelSerializer(ModelRefSerializer):
    """The chosen model, and how to call it."""

    kind = serializers.ChoiceField(choices=ProviderKind.values, help_text="The API the provider speaks.")
    base_url = serializers.CharField(allow_null=True, help_text="Where the provider's API is, when not the SDK's default.")
    model_id = serializers.CharField()
    invoke_id = serializers.CharField()
    region = serializers.CharField(allow_null=True)


class TraceQuotaSerializer(serializers.Serializer):
    """A quota that turned a candidate away, as it stood then (amounts in its unit: dollars for cost quotas)."""

    quota = serializers.CharField(help_text="The quota's label: provider/name.")
    quota_id = serializers.IntegerField()
    metric = serializers.CharField()
    window = serializers.CharField()
    reset = serializers.CharField()
    used = serializers.FloatField()
    estimate = serializers.FloatField()
    soft_limit = serializers.FloatField()
    limit = serializers.FloatField()
    frees_at = serializers.DateTimeField(allow_null=True, help_text="When its oldest counted usage leaves the window.")


class TraceEntrySerializer(serializers.Serializer):
    """One candidate the walk considered."""

    model = ModelRefSerializer()
    verdict = serializers.ChoiceField(choices=Verdict.values)
    cause = serializers.ChoiceField(choices=SkipReason.values, allow_null=True, help_text="Why it was passed over; null when chosen.")
    reason = serializers.CharField(help_text="Why it was chosen or passed over, as a sentence.")
    until = serializers.DateTimeField(allow_null=True, help_text="When its cooldown or provider rate limit ends.")
    quotas = TraceQuotaSerializer(many=True, help_text="The quotas that turned it away (cause quota).")


class RouteResponseSerializer(serializers.Serializer):
    decision_id = serializers.UUIDField(allow_null=True, help_text="Null for a dry run, which stores nothing.")
    outcome = serializers.ChoiceField(choices=COUNTED_OUTCOMES)
    reason = serializers.CharField(help_text="Why the decision went as it did.")
    model = RoutedModelSerializer()
    primary = ModelRefSerializer(help_text="The first model of the route or tier.")
    trace = TraceEntrySerializer(many=True)
    policy_version = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class RefusalSerializer(serializers.Serializer):
    error = serializers.ChoiceField(choices=RefusalCode.values)
    detail = serializers.CharField(help_text="The error, as a sentence.")
    reason = serializers.CharField(help_text="Why the decision went as it did: which candidates were passed over and why.")
    decision_id = serializers.UUIDField(allow_null=True)
    outcome = serializers.ChoiceField(choices=[o for o in Outcome.values if o not in COUNTED_OUTCOMES])
    primary = ModelRefSerializer(allow_null=True)
    trace = TraceEntrySerializer(many=True)
    policy_version = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()


class UsageRequestSerializer(StrictSerializer):
    """The body of POST /usage, for the OpenAPI schema; router.payloads validates it."""

    model = StrictCharField(max_length=100, required=False, validators=[MODEL_KEY],
                            help_text="The model that answered; its decision's when left out.")
    input_tokens = _tokens(required=False, help_text="Uncached input tokens; required when status is ok.")
    output_tokens = _tokens(required=False, help_text="Required when status is ok.")
    cache_read_input_tokens = _tokens(default=0)
    cache_write_input_tokens = _tokens(default=0)
    status = serializers.ChoiceField(
        choices=UsageStatus.values, default=UsageStatus.OK,
        help_text="not_sent: the call never reached the provider; the decision's whole reservation is given back on every quota.",
    )
    decision_id = StrictUUIDField(required=False)
    idempotency_key = StrictCharField(max_length=200, required=False)
    retry_after = StrictIntegerField(min_value=0, max_value=86_400, required=False)
    ratelimit_headers = serializers.DictField(child=StrictCharField(max_length=200), required=False)

    def validate_ratelimit_headers(self, value: dict) -> dict:
        if len(value) > MAX_RATELIMIT_HEADERS:
            raise serializers.ValidationError(f"At most {MAX_RATELIMIT_HEADERS} headers.")
        invalid = sorted(repr(name) for name in value if not HEADER_NAME.fullmatch(name))
        if invalid:
            raise serializers.ValidationError(f"Not HTTP header names: {', '.join(invalid)}.")
        return value

    def validate(self, attrs):
        missing = [name for name in ("input_tokens", "output_tokens") if name not in attrs]
        if attrs["status"] == UsageStatus.OK and missing:
            raise serializers.ValidationError({name: ["This field is required."] for name in missing})
        if not attrs.get("model") and not attrs.get("decision_id"):
            raise serializers.ValidationError("Name the model, or the decision_id of the routing decision.")
        if attrs["status"] == UsageStatus.NOT_SENT:
            not_sent_problem(attrs.get("decision_id"), [attrs.get(name, 0) for name in TOKEN_FIELDS])
        return {"input_tokens": 0, "output_tokens": 0} | attrs


TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


def not_sent_problem(decision_id, tokens: list[int]) -> None:
    """A `not_sent` report gives a decision's reservation back: it names the decision and used no tokens."""
    if not decision_id:
        raise serializers.ValidationError({"decision_id": ["A not_sent report gives back a decision's reservation: name the decision."]})
    if any(tokens):
        raise serializers.ValidationError({"status": ["A call that was not sent used no tokens: send none, or another status."]})


class CountedSerializer(serializers.Serializer):
    """What a call counts against the provider's own limits (docs/architecture.md, "How Switchboard counts")."""

    tokens = serializers.IntegerField(source="counted_tokens")
    input_tokens = serializers.IntegerField(source="counted_input_tokens")
    output_tokens = serializers.IntegerField(source="counted_output_tokens")


USED = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd", "counted"]


class UsageEventSerializer(serializers.ModelSerializer):
    """A stored usage report, for the OpenAPI schema: router.api.usage_body writes it."""

    usage_id = serializers.UUIDField(source="id")
    model = ModelRefSerializer(help_text="The model the report counts against: the one that answered.")
    counted = CountedSerializer(source="*")

    class Meta:
        model = UsageEvent
        fields = ["usage_id", "created_at", "model", "decision_id", "answered_instead", *USED, "status", "idempotency_key",
                  "retry_after", "ratelimit_headers"]


class CooldownSerializer(serializers.Serializer):
    until = serializers.DateTimeField()
    reason = serializers.CharField()
    reported_by = serializers.CharField(help_text="The API key whose usage report started the cooldown.")


class ModelCatalogSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.slug")
    invoke_id = serializers.CharField(source="effective_invoke_id")
    region = NullIfBlankCharField(source="provider.region")
    availability_reason = NullIfBlankCharField()
    burndown_rate = serializers.IntegerField(source="effective_burndown_rate",
                                             help_text="Quota tokens one output token takes (Bedrock; 1 elsewhere).")
    cooldown = serializers.SerializerMethodField()

    class Meta:
        model = LLMModel
        fields = ["key", "provider", "model_id", "invoke_id", "region", "availability", "availability_reason", "checked_at",
                  "not_found_at", "enabled", "context_window", "input_cost_per_mtok", "output_cost_per_mtok", "cache_read_cost_per_mtok",
                  "cache_write_cost_per_mtok", "burndown_rate", "cooldown"]

    @extend_schema_field(CooldownSerializer(allow_null=True))
    def get_cooldown(self, model: LLMModel) -> dict | None:
        """The model's cooldown now, from the view's context (read once for the page)."""
        state = self.context["cooldowns"].get(model.key)
        if state is None:
            return None
        until = datetime.fromtimestamp(state.cooldown_until, tz=UTC)
        return CooldownSerializer({"until": until, "reason": state.cooldown_reason, "reported_by": state.cooldown_by}).data


class QuotaTuningSerializer(serializers.Serializer):
    quota_id = serializers.IntegerField(source="quota.id")
    provider = serializers.CharField(source="quota.provider")
    name = serializers.CharField(source="quota.name")
    soft_limit_ratio = serializers.FloatField(source="quota.soft_limit_ratio")
    fallbacks = serializers.IntegerField(help_text="Fallbacks this quota caused at its soft limit in the period.")
    unnecessary = serializers.IntegerField(help_text="Of those, how many the quota had room for until their usage left its window.")
    unnecessary_rate = serializers.FloatField()
    peak_ratio = serializers.FloatField(help_text="The highest usage in the period, as a share of the limit.")
    suggested_soft_limit_ratio = serializers.FloatField(
        allow_null=True, help_text="The highest ratio that would have kept the quota under its hard limit; null if it passed it.")


class TuningSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    results = QuotaTuningSerializer(many=True)


class ForecastSerializer(serializers.Serializer):
    soft_at = serializers.DateTimeField(allow_null=True)
    hard_at = serializers.DateTimeField(allow_null=True)
    burn_per_hour = serializers.FloatField()


class QuotaStatusSerializer(serializers.Serializer):
    quota_id = serializers.IntegerField()
    provider = serializers.CharField()
    name = serializers.CharField()
    models = ModelRefSerializer(many=True, help_text="The models it covers; empty for a provider-wide quota.")
    metric = serializers.CharField()
    window = serializers.CharField()
    reset = serializers.CharField()
    limit = serializers.FloatField()
    soft_limit = serializers.FloatField()
    used = serializers.FloatField()
    ratio = serializers.FloatField()
    source = serializers.CharField()
    frees_at = serializers.DateTimeField(allow_null=True)
    forecast = ForecastSerializer()


class DecisionSerializer(serializers.ModelSerializer):
    decision_id = serializers.UUIDField(source="id")
    category = NullIfBlankCharField()
    complexity = NullIfBlankCharField()
    tier = NullIfBlankCharField()
    model = serializers.SerializerMethodField()
    primary = serializers.SerializerMethodField()
    answered_by = serializers.SerializerMethodField()
    trace = serializers.SerializerMethodField()
    counted = CountedSerializer(source="*")

    class Meta:
        model = Decision
        fields = ["decision_id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model", "primary",
                  "answered_by", "reason", "trace", "policy_version", "reported", *USED]

    @extend_schema_field(ModelRefSerializer(allow_null=True, help_text="The model chosen; null for a refusal."))
    def get_model(self, decision: Decision) -> dict | None:
        return model_ref(decision.model_key, decision.provider_slug)

    @extend_schema_field(ModelRefSerializer(allow_null=True, help_text="The first model of the route or tier; null when there was none."))
    def get_primary(self, decision: Decision) -> dict | None:
        return catalog_model_ref(decision.primary_key)

    @extend_schema_field(ModelRefSerializer(allow_null=True, help_text="The model that answered, when it was not the one chosen."))
    def get_answered_by(self, decision: Decision) -> dict | None:
        return catalog_model_ref(decision.answered_by)

    @extend_schema_field(TraceEntrySerializer(many=True))
    def get_trace(self, decision: Decision) -> list[dict]:
        return api_trace(decision.trace)
