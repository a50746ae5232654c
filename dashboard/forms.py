"""The dashboard's GET forms: the fallback history's filters and the what-if request."""

from decimal import Decimal

from django import forms

from dashboard import selectors
from router.engine import RouteRequest
from router.payloads import MAX_ATTEMPT
from router.snapshot import PolicySnapshot, QuotaSpec
from router.tuning import DEFAULT_DAYS, MAXIMUM_DAYS
from switchboard.vocabulary import NOT_PRIMARY, REQUEST_COMPLEXITIES, SkipReason

QUOTA_FIELD_PREFIX = "quota_"


def _blank(label: str, values: list[str]) -> list[tuple[str, str]]:
    return [("", label)] + [(v, v) for v in values]


class FallbackFilterForm(forms.Form):
    """Filters of the fallback history; every field is optional."""

    since = forms.DateTimeField(required=False, label="Since (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    category = forms.ChoiceField(required=False)
    provider = forms.ChoiceField(required=False, help_text="Any candidate considered was at this provider.")
    model = forms.ChoiceField(required=False, help_text="Chosen or passed over.")
    outcome = forms.ChoiceField(required=False, choices=[("", "any outcome")] + [(o.value, o.label) for o in NOT_PRIMARY])
    reason = forms.ChoiceField(required=False, choices=_blank("any reason", list(SkipReason.values)),
                               help_text="Why a candidate was passed over.")
    quota = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, help_text="A candidate's quota named in the trace.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = _blank("any category", selectors.category_choices())
        self.fields["provider"].choices = _blank("any provider", selectors.provider_choices())
        self.fields["model"].choices = _blank("any model", selectors.model_choices())
        self.fields["quota"].choices = [("", "any quota")] + [(str(pk), label) for pk, label in selectors.quota_choices()]

    def clean(self) -> dict:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since >= until:
            self.add_error("until", "Must be later than 'since'.")
        return cleaned

    def filters(self) -> dict:
        """The cleaned values as keyword arguments of selectors.fallback_decisions."""
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


class WhatIfForm(forms.Form):
    """A routing request plus the what-if's assumptions: quota ratios and models marked unavailable.

    The choices come from the policy snapshot the router itself decides on. One optional percentage
    field per quota (`quota_<id>`) overrides that quota's used ratio.
    """

    category = forms.ChoiceField(required=False)
    complexity = forms.ChoiceField(choices=[(c, c) for c in REQUEST_COMPLEXITIES], initial="medium")
    tier = forms.ChoiceField(required=False, help_text="Instead of a category; neither means the default tier.")
    estimated_input_tokens = forms.IntegerField(min_value=0, max_value=10**9, initial=1200, label="Estimated input tokens")
    estimated_output_tokens = forms.IntegerField(min_value=0, max_value=10**9, initial=800, label="Estimated output tokens")
    attempt = forms.IntegerField(min_value=1, max_value=MAX_ATTEMPT, initial=1, required=False,
                                 help_text="The how-manieth try of the same task (escalation and retry limits).")
    exclude = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Exclude",
                                        help_text="Models the service has just seen fail for this task (the request's `exclude`).")
    unavailable = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Mark unavailable")

    def __init__(self, *args, snapshot: PolicySnapshot, current_ratios: dict[int, float] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        current_ratios = current_ratios or {}
        default = f" (default tier: {snapshot.default_tier})" if snapshot.default_tier else ""
        self.fields["category"].choices = _blank("none", sorted(snapshot.categories))
        self.fields["tier"].choices = _blank(f"none{default}", sorted(snapshot.tiers))
        self.fields["exclude"].choices = self.fields["unavailable"].choices = [(key, key) for key in sorted(snapshot.models)]
        self.quotas: list[QuotaSpec] = sorted(snapshot.quotas, key=lambda q: (q.provider, q.name))
        for quota in self.quotas:
            now = current_ratios.get(quota.id)
            self.fields[f"{QUOTA_FIELD_PREFIX}{quota.id}"] = forms.DecimalField(
                required=False, min_value=Decimal(0), max_value=Decimal(100), decimal_places=2,
                label=quota.label,
                help_text=f"{quota.metric} per {quota.window}" + (f", now {now * 100:.0f}%" if now is not None else ""),
                widget=forms.NumberInput(attrs={"step": "any", "placeholder": f"{now * 100:.0f}" if now is not None else "%"}),
            )

    def request_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("category", "complexity", "tier", "estimated_input_tokens", "estimated_output_tokens", "attempt")]

    def quota_fields(self) -> list[forms.BoundField]:
        return [self[f"{QUOTA_FIELD_PREFIX}{quota.id}"] for quota in self.quotas]

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("category") and cleaned.get("tier"):
            raise forms.ValidationError("Pick a category or a tier, not both.")
        return cleaned

    def route_request(self) -> RouteRequest:
        data = self.cleaned_data
        return RouteRequest(
            category=data.get("category") or None, complexity=data["complexity"], tier=data.get("tier") or None,
            estimated_input_tokens=data["estimated_input_tokens"], estimated_output_tokens=data["estimated_output_tokens"],
            exclude=frozenset(data.get("exclude") or ()), attempt=data.get("attempt") or 1,
        )

    def ratio_overrides(self) -> dict[int, float]:
        """{quota id: used ratio} for each quota given a percentage."""
        overrides = {}
        for quota in self.quotas:
            value = self.cleaned_data.get(f"{QUOTA_FIELD_PREFIX}{quota.id}")
            if value is not None:
                overrides[quota.id] = float(value) / 100
        return overrides

    def unavailable_models(self) -> frozenset[str]:
        return frozenset(self.cleaned_data.get("unavailable") or ())



class TuningForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=MAXIMUM_DAYS, initial=DEFAULT_DAYS, label="Days",
                              help_text=f"The period, up to {MAXIMUM_DAYS} days.")
