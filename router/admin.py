"""The ops team's editor for categories, routes, tiers and the policy; decisions and usage read-only; API keys.

Routes and tiers edit their ordered model lists inline, reordered by drag and drop (the first model is
the primary, the rest the fallback chain), and their escalation lists likewise. The catalog's model
admin is shown with the cooldown the counters hold (the catalog itself cannot read the router's counters).
"""

from datetime import UTC, datetime

from adminsortable2.admin import CustomInlineFormSet, SortableAdminBase, SortableTabularInline
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, When
from django.http import HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey
from simple_history.admin import SimpleHistoryAdmin

from providers.admin import LLMModelAdmin, ProviderAdmin, QuotaAdmin
from providers.models import LLMModel, Provider, Quota
from router.admin_guard import GuardedInline, PolicyEditAdmin, register_guarded
from router.counters import CountersUnavailable
from router.counters.connections import PoolExhausted
from router.counting import LEDGER_FIELDS, display_amount
from router.models import (
    ApiKey,
    Category,
    Decision,
    ModelChain,
    Policy,
    PolicyVersion,
    Route,
    RouteEscalation,
    RouteModel,
    Tier,
    TierEscalation,
    TierModel,
    UsageEvent,
)
from router.policy.apply import Author, apply_version
from router.policy.fields import PolicyError
from router.policy.plan import plan_policy
from router.policy.versions import describe, lock_policy
from router.selectors import model_cooldowns, quota_status
from switchboard.admin import ReadOnlyAdmin, plain_number
from switchboard.vocabulary import Scope

admin.site.site_header = "Switchboard"
admin.site.site_title = "Switchboard admin"

# The library registers its own APIKey model, which Switchboard does not use: only ApiKey below is real.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(Category)
class CategoryAdmin(PolicyEditAdmin, SimpleHistoryAdmin):
    """Task categories: whether they may fall back, and whether they may use the headroom above a soft limit."""

    list_display = ("slug", "fallback", "may_use_headroom", "description")
    list_filter = ("fallback", "may_use_headroom")
    search_fields = ("slug", "description")


class ChainFormSet(CustomInlineFormSet):
    """A model list that names the model listed twice (the default says only "Please correct the duplicate data")."""

    def clean(self) -> None:
        seen = set()
        for form in self.forms:
            model = form.cleaned_data.get("model") if form.cleaned_data and not form.cleaned_data.get("DELETE") else None
            if model is not None and model in seen:
                raise ValidationError(f"{model.key} is listed twice: a model can appear only once in a list.")
            seen.add(model)
        super().clean()


class OrderedModelsInline(GuardedInline, SortableTabularInline):
    """A route's or tier's models, reordered by drag and drop (the hidden `position` field)."""

    policy_field = "models"
    formset = ChainFormSet
    fields = ("model",)
    extra = 0
    verbose_name = "model"
    verbose_name_plural = "models, in order: the first is the primary, the rest the fallback chain (drag to reorder)"


class EscalationInline(OrderedModelsInline):
    """The models a task walks instead once it has failed `escalate_after` times, in order."""

    policy_field = "escalation"
    verbose_name = "escalation model"
    verbose_name_plural = "escalation: the models a task that keeps failing walks instead, in order (drag to reorder)"


class ModelChainAdmin(PolicyEditAdmin, SortableAdminBase, SimpleHistoryAdmin):
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
    fields = ("category", "complexity", "escalate_after", "max_attempts")
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
    fields = ("slug", "escalate_after", "max_attempts")
    inlines = [TierModelInline, TierEscalationInline]

    @admin.display(boolean=True, description="default tier")
    def is_default(self, obj: Tier) -> bool:
        return Policy.objects.filter(pk=1, default_tier=obj).exists()


@admin.register(Policy)
class PolicyAdmin(PolicyEditAdmin, SimpleHistoryAdmin):
    """The one policy row: only the default tier is edited here; every policy edit bumps the version."""

    clears_default_tier = True

    list_display = ("__str__", "version", "default_tier", "updated_at")
    fields = ("default_tier", "version", "updated_at")
    readonly_fields = ("version", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: Policy, form, change: bool) -> None:
        lock_policy()
        # The form's copy of `version` may be stale: never write it back.
        obj.save(update_fields=["default_tier", "updated_at"])


class RollbackForm(forms.Form):
    comment = forms.CharField(required=False, max_length=500, label="Why (kept in the policy history)")


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """The policy history: every change from any source, newest first, with its diff; any version can be rolled back to."""

    list_display = ("number", "created_at", "author", "source", "comment", "summary")
    list_filter = ("source", "created_at")
    search_fields = ("author", "comment", "=number")
    fields = ("number", "created_at", "author", "source", "comment", "diff", "rollback")
    readonly_fields = fields

    @admin.display(description="changes")
    def summary(self, obj: PolicyVersion) -> str:
        lines = [describe(change) for change in obj.changes]
        return "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")

    @admin.display(description="what changed")
    def diff(self, obj: PolicyVersion) -> str:
        return format_html("<pre>{}</pre>", "\n".join(describe(change) for change in obj.changes) or "-")

    @admin.display(description="roll back")
    def rollback(self, obj: PolicyVersion) -> str:
        url = reverse("admin:router_policyversion_rollback", args=[obj.pk])
        return format_html('<a class="button" href="{}">Restore the policy as it stood at version {}</a>', url, obj.number)

    def get_urls(self):
        return [path("<int:object_id>/rollback/", self.admin_site.admin_view(self.rollback_view), name="router_policyversion_rollback"),
                *super().get_urls()]

    def rollback_view(self, request, object_id: int):
        """GET: what restoring this version would change; POST: restore it, as a new version."""
        version = self.get_object(request, str(object_id))
        if version is None:
            return HttpResponseRedirect(reverse("admin:router_policyversion_changelist"))
        if not request.user.has_perm("router.change_policy"):
            raise PermissionDenied
        form = RollbackForm(request.POST or None)
        author = Author(request.user.get_username(), request.user)
        try:
            if request.method == "POST" and form.is_valid():
                if apply_version(version.number, author, form.cleaned_data["comment"]):
                    self.message_user(request, f"The policy stands as it did at version {version.number}: now version "
                                               f"{Policy.current().version}.", messages.SUCCESS)
                else:
                    self.message_user(request, f"The policy already stands as it did at version {version.number}.", messages.INFO)
                return HttpResponseRedirect(reverse("admin:router_policyversion_changelist"))
            changes, problems = plan_policy(version.document, author), []
        except PolicyError as exc:
            changes, problems = [], exc.problems
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Roll back to version {version.number}",
                   "version": version, "changes": [str(change) for change in changes], "problems": problems, "form": form}
        return TemplateResponse(request, "admin/policy_rollback.html", context)


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
        """The trace as a table: every model, provider and quota it names links to its page, and so do the
        decision's route (or tier) and policy version."""
        models = dict(LLMModel.objects.filter(key__in={entry.get("model") for entry in obj.trace}).values_list("key", "pk"))
        providers = dict(Provider.objects.values_list("slug", "pk"))

        def moment(epoch: float | None) -> datetime | None:
            return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None

        def quota(blocked: dict) -> dict:
            links = {"page_url": reverse("dashboard:quota", args=[blocked["quota_id"]]),
                     "edit_url": reverse("admin:providers_quota_change", args=[blocked["quota_id"]])} if blocked.get("quota_id") else {}
            return blocked | links | {"frees": moment(blocked.get("frees_at"))}

        entries = []
        for entry in obj.trace:
            model, provider = models.get(entry.get("model")), providers.get(entry.get("provider"))
            entries.append(entry | {
                "model_url": reverse("admin:providers_llmmodel_change", args=[model]) if model else "",
                "provider_url": reverse("admin:providers_provider_change", args=[provider]) if provider else "",
                "quotas": [quota(blocked) for blocked in entry.get("quotas") or []],
                "until_at": moment(entry.get("until")),
            })
        if obj.category:
            chain = (Route.objects.filter(category__slug=obj.category, complexity__in=[obj.complexity, "any"])
                     .order_by(Case(When(complexity=obj.complexity, then=0), default=1)).first())
            chain_url = reverse("admin:router_route_change", args=[chain.pk]) if chain else ""
        else:
            chain = Tier.objects.filter(slug=obj.tier).first() if obj.tier else None
            chain_url = reverse("admin:router_tier_change", args=[chain.pk]) if chain else ""
        return render_to_string("admin/decision_trace.html", {
            "entries": entries, "chain": chain, "chain_url": chain_url, "decision": obj,
            "version_url": reverse("dashboard:policy-version", args=[obj.policy_version]),
        })


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


class LLMModelWithCooldownAdmin(PolicyEditAdmin, LLMModelAdmin):
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


class QuotaWithUsageAdmin(PolicyEditAdmin, QuotaAdmin):
    """The catalog's quota admin (providers.admin), with each quota's usage and ratio as the router counts them now."""

    list_display = (*QuotaAdmin.list_display[:-1], "usage", "source")
    readonly_fields = (*QuotaAdmin.readonly_fields, "usage")
    fields = (*QuotaAdmin.fields, "usage")

    # One read of the counters for the whole page, as the model admin reads its cooldowns.
    def changelist_view(self, request, extra_context=None):
        self.usage_by_quota = _quota_usage()
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.usage_by_quota = _quota_usage()
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="used now")
    def usage(self, obj: Quota) -> str:
        status = getattr(self, "usage_by_quota", {}).get(obj.pk)
        if status is None:
            return "-"
        quota = status.quota
        used, soft, limit = (plain_number(display_amount(quota, amount)) for amount in (status.used, quota.soft_limit, quota.limit))
        level = " (over the soft limit)" if status.used >= quota.soft_limit else ""
        return f"{used} of {limit} ({status.ratio:.0%}; soft limit {soft}){level}"


def _quota_usage() -> dict:
    try:
        return {status.quota.id: status for status in quota_status()}
    except (CountersUnavailable, PoolExhausted):
        return {}


admin.site.unregister(LLMModel)
admin.site.register(LLMModel, LLMModelWithCooldownAdmin)
admin.site.unregister(Quota)
admin.site.register(Quota, QuotaWithUsageAdmin)
register_guarded(Provider, ProviderAdmin)
