"""Alert rules (edited like every policy object: checked whole, kept as a version), channels with write-only
secrets, and the alerts and messages the worker stored (read-only)."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from alerts.delivery import DeliveryFailed, send
from alerts.messages import channel_test_message
from alerts.models import Alert, AlertChannel, AlertRule, Notification
from providers.egress import EgressRefused, check_base_url
from router.admin_guard import PolicyEditAdmin
from switchboard.admin import PlainNumbersAdmin, ReadOnlyAdmin


@admin.register(AlertRule)
class AlertRuleAdmin(PolicyEditAdmin, PlainNumbersAdmin):
    """Alert rules: what the worker watches every 30 s (the policy file's `alerts` list)."""

    list_display = ("slug", "condition", "severity", "enabled", "repeat_minutes")
    list_filter = ("condition", "severity", "enabled")
    search_fields = ("slug", "description")
    fieldsets = [
        (None, {"fields": ("slug", "condition", "severity", "enabled", "repeat_minutes", "description")}),
        ("Parameters (each condition reads its own)", {"fields": ("within_minutes", "percent", "category", "min_decisions",
                                                                  "for_minutes", "seconds")}),
    ]

    def get_actions(self, request):
        # Deleting several rules at once would pass around the policy's check, as for every policy object.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class AlertChannelForm(forms.ModelForm):
    """A channel, with a write-only webhook URL and token: typed in, encrypted, never rendered back."""

    new_url = forms.URLField(required=False, assume_scheme="https", max_length=2000,
                             widget=forms.PasswordInput(render_value=False),
                             help_text="Webhook: the URL to POST to (Slack and Teams carry their secret in it). "
                                       "Stored encrypted and never shown again; leave empty to keep the stored one.")
    new_token = forms.CharField(required=False, strip=True, widget=forms.PasswordInput(render_value=False),
                                help_text="Webhook (optional): sent as 'Authorization: Bearer <token>'. Stored encrypted, never shown again.")
    clear_token = forms.BooleanField(required=False, help_text="Remove the stored token.")

    class Meta:
        model = AlertChannel
        fields = ("name", "kind", "enabled", "min_severity", "recipients")

    def clean_new_url(self) -> str:
        url = self.cleaned_data.get("new_url", "")
        try:
            check_base_url(url)
        except EgressRefused as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url

    def clean_recipients(self) -> str:
        addresses = [address.strip() for address in self.cleaned_data.get("recipients", "").split(",") if address.strip()]
        for address in addresses:
            forms.EmailField().clean(address)
        return ", ".join(addresses)

    def clean(self) -> dict:
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == AlertChannel.Kind.EMAIL and not cleaned.get("recipients"):
            self.add_error("recipients", "An email channel needs at least one address.")
        if kind in (AlertChannel.Kind.WEBHOOK, AlertChannel.Kind.SLACK) and not (cleaned.get("new_url") or self.instance.has_url):
            self.add_error("new_url", "A webhook channel needs a URL.")
        return cleaned

    def save(self, commit: bool = True) -> AlertChannel:
        if self.cleaned_data.get("new_url"):
            self.instance.set_url(self.cleaned_data["new_url"])
        if self.cleaned_data.get("clear_token"):
            self.instance.set_token("")
        elif self.cleaned_data.get("new_token"):
            self.instance.set_token(self.cleaned_data["new_token"])
        return super().save(commit)


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    """Where alerts go; a failing channel shows since when and why."""

    form = AlertChannelForm
    actions = ["send_test_message"]
    list_display = ("name", "kind", "enabled", "min_severity", "url_stored", "failing_since", "last_sent_at")
    readonly_fields = ("url_stored", "token_stored", "failing_since", "last_error", "last_sent_at", "created_at", "updated_at")
    secret_fields = ("new_url", "new_token", "clear_token")
    fieldsets = [
        (None, {"fields": ("name", "kind", "enabled", "min_severity")}),
        ("Webhook", {"fields": ("url_stored", "new_url", "token_stored", "new_token", "clear_token")}),
        ("Email", {"fields": ("recipients",)}),
        ("Delivery", {"fields": ("failing_since", "last_error", "last_sent_at", "created_at", "updated_at")}),
    ]

    def get_fieldsets(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return self.fieldsets
        return [(name, {"fields": [f for f in options["fields"] if f not in self.secret_fields]}) for name, options in self.fieldsets]

    @admin.action(description="Send a test message to the selected channels", permissions=["change"])
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            try:
                send(channel, channel_test_message(request.user.get_username()))
            except DeliveryFailed as exc:
                messages.error(request, f"Channel {channel.name}: the test message was not taken: {exc}")
            else:
                messages.success(request, f"Channel {channel.name}: the test message was sent.")

    @admin.display(boolean=True, description="URL stored")
    def url_stored(self, obj: AlertChannel) -> bool:
        return obj.has_url

    @admin.display(boolean=True, description="token stored")
    def token_stored(self, obj: AlertChannel) -> bool:
        return obj.has_token


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("rule_slug", "subject", "severity", "started_at", "resolved_at")
    list_filter = ("severity", "rule_slug")
    search_fields = ("rule_slug", "subject", "summary")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("channel", "created_at", "status", "attempts", "sent_at", "last_error")
    list_filter = ("status", "channel")
