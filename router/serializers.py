"""The shapes of the REST API's answers that DRF renders (the routing calls declare theirs in router.payloads)."""

from datetime import UTC, datetime

import msgspec
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers.models import LLMModel
from router.models import Decision
from router.payloads import Counted
from router.shapes import ModelRef, TraceEntry, api_trace, as_json, catalog_model_ref, model_ref


class NullIfBlankCharField(serializers.CharField):
    """Text that is null when absent, never an empty string."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value):
        return super().to_representation(value) if value else None


def shape(struct: type[msgspec.Struct], *, many: bool = False, nullable: bool = False, description: str = "") -> dict:
    """The schema of a field holding one of the shapes the routing calls declare (router.shapes, router.payloads):
    a reference to its component, so that a model or a trace reads the same in every answer."""
    schema: dict = {"$ref": f"#/components/schemas/{struct.__name__}"}
    if many:
        schema = {"type": "array", "items": schema}
    elif nullable or description:
        schema = {"allOf": [schema]} | ({"nullable": True} if nullable else {})
    return schema | ({"description": description} if description else {})


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()


USED = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd"]


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
    models = serializers.SerializerMethodField()
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

    @extend_schema_field(shape(ModelRef, many=True, description="The models it covers; empty for a provider-wide quota."))
    def get_models(self, row: dict) -> list[dict]:
        return row["models"]


class DecisionSerializer(serializers.ModelSerializer):
    decision_id = serializers.UUIDField(source="id")
    category = NullIfBlankCharField()
    complexity = NullIfBlankCharField()
    tier = NullIfBlankCharField()
    model = serializers.SerializerMethodField()
    primary = serializers.SerializerMethodField()
    answered_by = serializers.SerializerMethodField()
    trace = serializers.SerializerMethodField()
    counted = serializers.SerializerMethodField()

    class Meta:
        model = Decision
        fields = ["decision_id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model", "primary",
                  "answered_by", "reason", "trace", "policy_version", "reported", *USED, "counted"]

    @extend_schema_field(shape(ModelRef, nullable=True, description="The model chosen; null for a refusal."))
    def get_model(self, decision: Decision) -> dict | None:
        return as_json(model_ref(decision.model_key, decision.provider_slug))

    @extend_schema_field(shape(ModelRef, nullable=True, description="The first model of the route or tier; null when there was none."))
    def get_primary(self, decision: Decision) -> dict | None:
        return as_json(catalog_model_ref(decision.primary_key))

    @extend_schema_field(shape(ModelRef, nullable=True, description="The model that answered, when it was not the one chosen."))
    def get_answered_by(self, decision: Decision) -> dict | None:
        return as_json(catalog_model_ref(decision.answered_by))

    @extend_schema_field(shape(TraceEntry, many=True))
    def get_trace(self, decision: Decision) -> list[dict]:
        return as_json(api_trace(decision.trace))

    @extend_schema_field(shape(Counted))
    def get_counted(self, decision: Decision) -> dict:
        return as_json(Counted(tokens=decision.counted_tokens, input_tokens=decision.counted_input_tokens,
                               output_tokens=decision.counted_output_tokens))
