"""The ops team's editor for categories, routes, tiers and the policy; decisions and usage read-only; API keys.

Routes and tiers edit their ordered model lists inline, reordered by drag and drop (the first model is
the primary, the rest the fallback chain), and their escalation lists likewise. The catalog's model
admin is shown with the cooldown the counters hold (the catalog itself cannot read the router's counters).
"""

import json
from datetime import UTC, datetime

from adminsortable2.admin import SortableAdminBase, SortableTabularInline
from django import forms
from django.contrib import admin
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey
from simple_history.admin import SimpleHistoryAdmin

from providers.admin import LLMModelAdmin
from providers.models import LLMModel
from router.counting import LEDGER_FIELDS
from router.models import (
    ApiKey,
    Category,
    Decision,
    ModelChain,
    Policy,
    Route,
    RouteEscalation,
    RouteModel,
    Tier,
    TierEscalation,
    TierModel,
    UsageEvent,
)
from router.selectors import model_cooldowns
from switchboard.admin import ReadOnlyAdmin
from switchboard.vocabulary import Scope

admin.site.site_header = "Switchboard"
admin.site.site_title = "Switchboard admin"

# The library registers its own APIKey model, which Switchboard does not use: only ApiKey below is real.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(Category)
class CategoryAdmin(SimpleHistoryAdmin):
    """Task categories: whether they may fall back, and whether they may use the headroom above a soft limit."""

    list_display = ("slug", "fallback", "may_use_headroom", "description")
    list_filter = ("fallback", "may_use_headroom")
    search_fields = ("slug", "description")


class OrderedModelsInline(SortableTabularInline):
    """A route's or tier's models, reordered by drag and drop (the hidden `position` field)."""

    fields = ("model",)
    extra = 0
    verbose_name = "model"
    verbose_name_plural = "models, in order: the first is the primary, the rest the fallback chain (drag to reorder)"


class EscalationInline(OrderedModelsInline):
    """The models a task walks instead once it has failed `escalate_after` times, in order."""

    verbose_name = "escalation model"
    verbose_name_plural = "escalation: the models a task that keeps failing walks instead, in order (drag to reorder)"


class ModelChainAdmin(SortableAdminBase, SimpleHistoryAdmin):
    """What the route and tier pages share: their ordered models and escalation, inline and in the list."""

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("entries__model", "escalation__model")

    @admin.display(description="models")
    def chain(self, obj: ModelChain) -> str:
        return " → ".join(entry.model.key for entry in obj.entries.all()) or "-"

    @admin.display(description="escalation")
    def escalation_chain(self, obj: ModelChain) -> str:
        keys = " → ".join(entry.model.key for entry in obj.escalation.all())
        return f"after {obj.escalate_after}: {keys}" if keys else "-"


class RouteModelInline(OrderedModelsInline):
    model = RouteModel


class RouteEscalationInline(EscalationInline):
    model = RouteEscalation


@admin.register(Route)
class RouteAdmin(ModelChainAdmin):
    """Routes: (category, complexity) and their ordered models."""

    list_display = ("__str__", "category", "complexity", "chain", "escalation_chain", "max_attempts")
    list_filter = ("category", "complexity")
    list_select_related = ("category",)
    search_fields = ("category__slug", "entries__model__key")
    inlines = [RouteModelInline, RouteEscalationInline]


class TierModelInline(OrderedModelsInline):
    model = TierModel


class TierEscalationInline(EscalationInline):
    model = TierEscalation


@admin.register(Tier)
class TierAdmin(ModelChainAdmin):
    """Tiers and their ordered models."""

    list_display = ("slug", "chain", "escalation_chain", "max_attempts", "is_default")
    search_fields = ("slug", "entries__model__key")
    inlines = [TierModelInline, TierEscalationInline]

    @admin.display(boolean=True, description="default tier")
    def is_default(self, obj: Tier) -> bool:
        return Policy.objects.filter(pk=1, default_tier=obj).exists()


@admin.register(Policy)
class PolicyAdmin(SimpleHistoryAdmin):
    """The one policy row: only the default tier is edited here; every policy edit bumps the version."""

    list_display = ("__str__", "version", "default_tier", "updated_at")
    fields = ("default_tier", "version", "updated_at")
    readonly_fields = ("version", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: Policy, form, change: bool) -> None:
        # The form's copy of `version` may be stale: never write it back.
        obj.save(update_fields=["default_tier", "updated_at"])


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    """The audit history of routing decisions, with each decision's trace."""

    list_display = ("created_at", "outcome", "category", "complexity", "tier", "model_key", "primary_key", "caller", "policy_version")
    list_filter = ("outcome", "created_at")
    search_fields = ("=id", "category", "tier", "model_key", "primary_key", "provider_slug", "caller", "reason")
    date_hierarchy = "created_at"
    # Counting a long history on every page costs more than the page is worth.
    show_full_result_count = False
    fields = ("id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model_key", "provider_slug", "primary_key",
              "answered_by", "reason", "trace_display", "policy_version", "reported", *LEDGER_FIELDS)
    readonly_fields = fields

    @admin.display(description="trace")
    def trace_display(self, obj: Decision) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.trace, indent=2))


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """Usage reported by services."""

    list_display = ("created_at", "model_key", "provider_slug", "status", "input_tokens", "output_tokens", "cost_usd", "caller")
    list_filter = ("status", "created_at")
    search_fields = ("model_key", "provider_slug", "caller", "idempotency_key", "=decision__id")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ("created_at", "caller", "model_key", "provider_slug", "decision", "answered_instead", "status", *LEDGER_FIELDS,
              "idempotency_key", "retry_after", "ratelimit_headers")
    readonly_fields = fields


class ApiKeyForm(forms.ModelForm):
    """Scopes as checkboxes: anything but route, usage, read and admin is a form error."""

    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
        help_text="route: ask for routing decisions; usage: report usage; read: quotas, models, decisions; admin: the policy.",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expiry_date", "revoked")


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    """Shows a new key once, in a message after saving; only its hash is stored."""

    form = ApiKeyForm
    list_display = ("prefix", "name", "scopes", "created", "expiry_date", "_has_expired", "revoked", "last_used_at")
    list_filter = ("revoked", "created")

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "created", "last_used_at")


class LLMModelWithCooldownAdmin(LLMModelAdmin):
    """The catalog's model admin (providers.admin), with the cooldown the router's counters hold now."""

    list_display = (*LLMModelAdmin.list_display, "cooldown")
    readonly_fields = (*LLMModelAdmin.readonly_fields, "cooldown")
    fieldsets = [*LLMModelAdmin.fieldsets, ("Cooldown", {"fields": ("cooldown",)})]

    # One read of the counters for the whole page. The admin instance is shared by every request, which is
    # harmless here: what any request read is the counters' state of that moment, the same for everyone.
    def changelist_view(self, request, extra_context=None):
        self.cooldowns = model_cooldowns()
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.cooldowns = model_cooldowns()
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="cooldown")
    def cooldown(self, obj: LLMModel) -> str:
        state = getattr(self, "cooldowns", {}).get(obj.key)
        if state is None:
            return "-"
        until = datetime.fromtimestamp(state.cooldown_until, tz=UTC)
        return f"until {until:%Y-%m-%d %H:%M:%S} UTC: {state.cooldown_reason} (reported by {state.cooldown_by or 'unknown'})"


admin.site.unregister(LLMModel)
admin.site.register(LLMModel, LLMModelWithCooldownAdmin)
