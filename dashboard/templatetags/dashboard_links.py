"""Template filters that turn a name (model, provider, route, tier) into the URL of its admin page, through the
page's Catalog (dashboard.selectors.catalog): `{{ catalog|model_url:key }}`; empty when nothing has that name.
And `{{ trace|free_ups }}`: when each passed-over candidate of a trace frees up, for the Retry-After's source."""

from django import template
from django.urls import reverse

from dashboard import selectors
from dashboard.selectors import Catalog, FreeUp

register = template.Library()


def _change(name: str, pk: int | None) -> str:
    return reverse(f"admin:{name}_change", args=[pk]) if pk is not None else ""


@register.filter
def model_url(catalog: Catalog, key: str) -> str:
    return _change("providers_llmmodel", catalog.models.get(key))


@register.filter
def provider_url(catalog: Catalog, slug: str) -> str:
    return _change("providers_provider", catalog.providers.get(slug))


@register.filter
def route_url(catalog: Catalog, decision) -> str:
    """The route (or tier) a decision's request took: what to edit when its answer was wrong."""
    if decision.category:
        return _change("router_route", catalog.route_id(decision.category, decision.complexity))
    return _change("router_tier", catalog.tiers.get(decision.tier)) if decision.tier else ""


@register.filter
def free_ups(trace: list[dict]) -> list[FreeUp]:
    """When each passed-over candidate frees up, soonest first (the Retry-After's source)."""
    return selectors.free_ups(trace)
