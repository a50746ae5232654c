"""The ops team's editor for providers, models and quotas; availability checks are shown read-only.

A provider's secret is write-only: the form takes a new one (or clears it) and only ever shows
whether one is stored.
"""

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from providers.egress import EgressRefused, check_base_url, check_credential_env
from providers.models import AvailabilityCheck, LLMModel, Provider, Quota
from switchboard.admin import PlainNumbersAdmin, ReadOnlyAdmin, plain_number
from switchboard.vocabulary import Availability

LATEST_CHECKS_SHOWN = 10


class QuotaForm(forms.ModelForm):
    """Refuses a pool naming models of another provider, as a form error on `models`."""

    class Meta:
        model = Quota
        fields = ("provider", "name", "metric", "window", "reset", "limit", "soft_limit_ratio", "models")

    def clean_soft_limit_ratio(self):
        ratio = self.cleaned_data.get("soft_limit_ratio")
        if ratio is not None and not 0 < ratio <= 1:
            raise forms.ValidationError("Must be above 0 and at most 1: the share of the limit above which only critical work may use the quota.")
        return ratio

    def clean(self) -> dict:
        cleaned = super().clean()
        # In the provider page's inline, `provider` is the page's provider (the inline formset adds it).
        provider = cleaned.get("provider")
        pool = cleaned.get("models")
        if provider and pool:
            Quota(provider=provider).validate_pool(pool)
        return cleaned


class QuotaInline(admin.TabularInline):
    """A provider's quotas, edited on its page; a pool offers only that provider's models."""

    model = Quota
    form = QuotaForm
    formfield_overrides = PlainNumbersAdmin.formfield_overrides
    extra = 0
    fields = ("name", "metric", "window", "reset", "limit", "soft_limit_ratio", "models", "source", "quota_code")
    readonly_fields = ("source", "quota_code")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        pool_field = formset.form.base_fields.get("models")
        if pool_field is not None:
            # A pool may only name this provider's models; a new provider has none yet.
            pool_field.queryset = LLMModel.objects.filter(provider=obj) if obj else LLMModel.objects.none()
            pool_field.help_text = "Empty: the quota covers every model of the provider. Save a new provider first to pick pool models."
        return formset


class LatestChecksFormSet(BaseInlineFormSet):
    """Only the most recent checks: a provider's full record can be long."""

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset()[:LATEST_CHECKS_SHOWN]
        return self._latest


class AvailabilityCheckInline(admin.TabularInline):
    """The provider's latest availability checks, read-only."""

    model = AvailabilityCheck
    formset = LatestChecksFormSet
    verbose_name_plural = f"latest availability checks (up to {LATEST_CHECKS_SHOWN}; all under Availability checks)"
    fields = ("started_at", "kind", "ok", "duration_ms", "models_changed", "error")
    readonly_fields = fields
    ordering = ("-started_at",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _egress_checked(check, value: str) -> str:
    """The value if providers.egress allows it, else the form error naming why."""
    try:
        check(value)
    except EgressRefused as exc:
        raise forms.ValidationError(str(exc)) from exc
    return value


class ProviderForm(forms.ModelForm):
    """The provider form, with a write-only secret: typed in, encrypted, never rendered back."""

    base_url = forms.URLField(required=False, max_length=200, assume_scheme="https",
                              help_text=Provider._meta.get_field("base_url").help_text)
    new_secret = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again. Leave empty to keep the stored secret.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret (credential_env is used instead).")

    class Meta:
        model = Provider
        fields = ("slug", "kind", "enabled", "base_url", "region", "aws_profile", "credential_env", "allow_global_profile",
                  "probe_models", "request_timeout_seconds", "cooldown_failures", "cooldown_window_seconds", "cooldown_seconds",
                  "max_retry_after_seconds")

    def clean_credential_env(self) -> str:
        return _egress_checked(check_credential_env, self.cleaned_data.get("credential_env", ""))

    def clean_base_url(self) -> str:
        return _egress_checked(check_base_url, self.cleaned_data.get("base_url", ""))

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("new_secret") and cleaned.get("clear_secret"):
            raise forms.ValidationError("Either enter a new secret or clear the stored one, not both.")
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        if self.cleaned_data.get("clear_secret"):
            self.instance.set_secret("")
        elif self.cleaned_data.get("new_secret"):
            self.instance.set_secret(self.cleaned_data["new_secret"])
        return super().save(commit)


@admin.register(Provider)
class ProviderAdmin(SimpleHistoryAdmin):
    """Providers with their quotas and latest checks; the secret is only ever shown as stored or not."""

    form = ProviderForm
    list_display = ("slug", "kind", "enabled", "region", "base_url", "credential_env", "secret_stored", "model_count")
    list_filter = ("kind", "enabled")
    search_fields = ("slug", "base_url", "region", "credential_env")
    readonly_fields = ("secret_stored", "created_at", "updated_at")
    inlines = [QuotaInline, AvailabilityCheckInline]
    secret_fields = ("new_secret", "clear_secret")
    fieldsets = [
        (None, {"fields": ("slug", "kind", "enabled", "base_url", "region", "aws_profile")}),
        ("Credentials", {"fields": ("credential_env", "secret_stored", *secret_fields)}),
        ("Availability refresh", {"fields": ("allow_global_profile", "probe_models", "request_timeout_seconds")}),
        ("Cooldown after failures", {"fields": ("cooldown_failures", "cooldown_window_seconds", "cooldown_seconds",
                                                "max_retry_after_seconds")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("models")

    def get_fieldsets(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return self.fieldsets
        # A viewer sees whether a secret is stored, and no inputs to set one.
        return [(name, {"fields": [f for f in options["fields"] if f not in self.secret_fields]}) for name, options in self.fieldsets]

    @admin.display(boolean=True, description="secret stored")
    def secret_stored(self, obj: Provider) -> bool:
        return obj.has_secret

    @admin.display(description="models")
    def model_count(self, obj: Provider) -> int:
        return len(obj.models.all())


class LLMModelForm(forms.ModelForm):
    """Refuses moving a model to another provider while its old provider's quota pools still name it."""

    class Meta:
        model = LLMModel
        fields = ("key", "provider", "model_id", "enabled", "context_window", "input_cost_per_mtok", "output_cost_per_mtok",
                  "cache_read_cost_per_mtok", "cache_write_cost_per_mtok", "burndown_rate")

    def clean(self) -> dict:
        cleaned = super().clean()
        provider = cleaned.get("provider")
        if self.instance.pk and provider and provider.pk != self.instance.provider_id:
            pools = sorted(str(quota) for quota in self.instance.quotas.select_related("provider"))
            if pools:
                raise forms.ValidationError({"provider": f"This model is in quota pools of its provider ({', '.join(pools)}): "
                                                         "take it out of them first."})
        return cleaned


@admin.register(LLMModel)
class LLMModelAdmin(SimpleHistoryAdmin, PlainNumbersAdmin):
    """Models; what the availability refresh resolves (invoke id, availability) is shown read-only."""

    form = LLMModelForm
    list_display = ("key", "provider", "model_id", "invoke_id", "enabled", "availability", "checked_at", "context_window",
                    "input_price", "output_price", "counted_burndown")
    list_filter = ("provider", "enabled", "availability")
    list_select_related = ("provider",)
    search_fields = ("key", "model_id", "invoke_id", "provider__slug")
    readonly_fields = ("invoke_id", "availability", "availability_reason", "checked_at", "not_found_at", "counted_burndown")
    fieldsets = [
        (None, {"fields": ("key", "provider", "model_id", "enabled")}),
        ("Limits and prices", {"fields": ("context_window", "input_cost_per_mtok", "output_cost_per_mtok", "cache_read_cost_per_mtok",
                                          "cache_write_cost_per_mtok")}),
        ("How the provider counts it", {"fields": ("burndown_rate", "counted_burndown")}),
        ("From the availability refresh", {"fields": ("invoke_id", "availability", "availability_reason", "checked_at", "not_found_at")}),
    ]
    actions = ["clear_not_found"]

    @admin.action(description="Bring back into routing models a call reported not found", permissions=["change"])
    def clear_not_found(self, request, queryset) -> None:
        cleared = LLMModel.clear_not_found(list(queryset.values_list("key", flat=True)), by=request.user.get_username())
        self.message_user(request, f"{cleared} model(s) brought back into routing; the next availability refresh checks them again.")

    @admin.display(description="input $/Mtok", ordering="input_cost_per_mtok")
    def input_price(self, obj: LLMModel) -> str:
        return plain_number(obj.input_cost_per_mtok)

    @admin.display(description="output $/Mtok", ordering="output_cost_per_mtok")
    def output_price(self, obj: LLMModel) -> str:
        return plain_number(obj.output_cost_per_mtok)

    @admin.display(description="output burndown")
    def counted_burndown(self, obj: LLMModel) -> str:
        """The rate the router counts with: the model's own, else AWS's for its id."""
        if obj.pk is None:
            return "-"
        source = "set for this model" if obj.burndown_rate else "AWS's rate for this model id"
        return f"{obj.effective_burndown_rate}x ({source})"

    def save_model(self, request, obj: LLMModel, form, change: bool) -> None:
        if change and {"provider", "model_id"} & set(form.changed_data):
            # The resolved invoke id and availability described the old model; the next refresh redoes them.
            obj.invoke_id = ""
            obj.availability = Availability.UNKNOWN
            obj.availability_reason = "model_id changed; waiting for the next availability refresh"
            obj.checked_at = None
        super().save_model(request, obj, form, change)


@admin.register(Quota)
class QuotaAdmin(SimpleHistoryAdmin, PlainNumbersAdmin):
    """All quotas across providers; source and quota code are set by the AWS sync."""

    form = QuotaForm
    list_display = ("__str__", "provider", "metric", "window", "reset", "limit_shown", "soft_ratio_shown", "pool", "source")
    list_filter = ("provider", "metric", "window", "reset", "source")
    list_select_related = ("provider",)
    search_fields = ("name", "provider__slug", "quota_code", "models__key")
    readonly_fields = ("source", "quota_code")
    filter_horizontal = ("models",)
    fields = ("provider", "name", "metric", "window", "reset", "limit", "soft_limit_ratio", "models", "source", "quota_code")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("models")

    @admin.display(description="limit", ordering="limit")
    def limit_shown(self, obj: Quota) -> str:
        return plain_number(obj.limit)

    @admin.display(description="soft limit ratio", ordering="soft_limit_ratio")
    def soft_ratio_shown(self, obj: Quota) -> str:
        return plain_number(obj.soft_limit_ratio)

    @admin.display(description="pool")
    def pool(self, obj: Quota) -> str:
        return ", ".join(sorted(model.key for model in obj.models.all())) or "all models"


@admin.register(AvailabilityCheck)
class AvailabilityCheckAdmin(ReadOnlyAdmin):
    """The record of availability refreshes and quota syncs, read-only."""

    list_display = ("started_at", "provider", "kind", "ok", "duration_ms", "models_changed", "short_error")
    list_filter = ("provider", "kind", "ok")
    list_select_related = ("provider",)
    search_fields = ("provider__slug", "error")
    date_hierarchy = "started_at"
    fields = ("provider", "kind", "started_at", "duration_ms", "ok", "error", "models_changed", "changes_display")
    readonly_fields = fields

    @admin.display(description="error")
    def short_error(self, obj: AvailabilityCheck) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"

    @admin.display(description="changes")
    def changes_display(self, obj: AvailabilityCheck) -> str:
        return format_html("<pre>{}</pre>", "\n".join(str(change) for change in obj.changes)) if obj.changes else "-"
