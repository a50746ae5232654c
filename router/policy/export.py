"""The current policy as a policy document: sorted, and without default values."""

from decimal import Decimal
from typing import Any

from django.db import models as db_models

from providers.models import LLMModel, Provider, Quota
from router.models import Category, Policy, Route, RouteEscalation, RouteModel, Tier, TierEscalation, TierModel
from router.policy import sections
from router.policy.fields import ALWAYS_EXPORTED, CATEGORY_FIELDS, COMPLEXITY_ORDER, MODEL_FIELDS, PROVIDER_FIELDS, QUOTA_FIELDS, automatic_quota_name


def _plain(value: Any) -> Any:
    """A number as a reader writes it: 5000000 rather than 5000000.000000, 0.8 rather than 0.800."""
    if not isinstance(value, Decimal):
        return value
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    # A float with more significant digits than it can hold exactly is written as a string instead.
    return as_float if Decimal(repr(as_float)) == value else str(value.normalize())


def _export_fields(obj: db_models.Model, names: tuple[str, ...]) -> dict:
    result = {}
    for name in names:
        value = getattr(obj, name)
        if name in ALWAYS_EXPORTED or value != obj._meta.get_field(name).get_default():
            result[name] = _plain(value)
    return result


def export_policy() -> dict:
    """The current policy as a policy document, sorted and without default values, ready for dump_policy."""
    document: dict[str, Any] = {"version": 1}
    policy = Policy.objects.select_related("default_tier").filter(pk=1).first()
    if policy and policy.default_tier:
        document["default_tier"] = policy.default_tier.slug

    manual_quotas = Quota.objects.filter(source=Quota.Source.MANUAL).prefetch_related("models").order_by("name")
    providers = Provider.objects.order_by("slug").prefetch_related(db_models.Prefetch("quotas", queryset=manual_quotas))
    document["providers"] = []
    for provider in providers:
        entry = _export_fields(provider, PROVIDER_FIELDS)
        quotas = [_export_quota(quota) for quota in provider.quotas.all()]
        if quotas:
            entry["quotas"] = quotas
        document["providers"].append(entry)

    document["models"] = [
        {"key": model.key, "provider": model.provider.slug, **_export_fields(model, MODEL_FIELDS[1:])}
        for model in LLMModel.objects.select_related("provider").order_by("key")
    ]
    tiers = Tier.objects.order_by("slug").prefetch_related(entries(TierModel), entries(TierEscalation, "escalation"))
    document["tiers"] = [{"slug": tier.slug, **_chain(tier)} for tier in tiers]
    document["categories"] = [_export_fields(category, CATEGORY_FIELDS) for category in Category.objects.order_by("slug")]
    routes = Route.objects.select_related("category").prefetch_related(entries(RouteModel), entries(RouteEscalation, "escalation"))
    document["routes"] = [
        {"category": route.category.slug, "complexity": route.complexity, **_chain(route)}
        for route in sorted(routes, key=lambda r: (r.category.slug, COMPLEXITY_ORDER.index(r.complexity)))
    ]
    for section in sections.registered():
        if owned := section.export():
            document[section.name] = owned
    return document


def _chain(owner: Route | Tier) -> dict:
    """A route's or tier's models, and its escalation list and attempt limits where it has them."""
    chain = {"models": [entry.model.key for entry in owner.entries.all()]}
    if escalation := [entry.model.key for entry in owner.escalation.all()]:
        chain["escalation"] = escalation
    return chain | {name: getattr(owner, name) for name in ("escalate_after", "max_attempts") if getattr(owner, name) is not None}


def entries(entry_model: type[db_models.Model], lookup: str = "entries") -> db_models.Prefetch:
    return db_models.Prefetch(lookup, queryset=entry_model.objects.select_related("model").order_by("position", "pk"))


def _export_quota(quota: Quota) -> dict:
    pool = sorted(model.key for model in quota.models.all())
    entry = _export_fields(quota, QUOTA_FIELDS)
    if entry.get("name") == automatic_quota_name(quota.metric, quota.window, pool):
        del entry["name"]
    if pool:
        entry["models"] = pool
    return entry
