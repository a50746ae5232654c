"""Reading a policy document into a plan of what the database must hold, naming every problem's place."""

import difflib
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models as db_models

from providers.egress import EgressRefused, check_base_url, check_credential_env
from providers.models import LLMModel, Provider, Quota
from router.models import Category, Route, Tier
from router.policy import sections as owned_sections
from router.policy.fields import (
    CATEGORY_FIELDS,
    CHAIN_FIELDS,
    MODEL_FIELDS,
    PROVIDER_FIELDS,
    QUOTA_FIELDS,
    RANGES,
    SECRET_KEYS,
    SECTIONS,
    TOP_LEVEL_KEYS,
    PolicyError,
    automatic_quota_name,
    type_name,
)
from switchboard.vocabulary import ProviderKind


@dataclass
class ChainPlan:
    """A route's or tier's models, its escalation list, and the attempts that escalate and that are allowed."""

    models: list[str]
    escalation: list[str]
    escalate_after: int | None
    max_attempts: int | None


@dataclass
class Plan:
    """A validated document: the field values of every object, keyed the way the database is."""

    providers: dict[str, dict] = field(default_factory=dict)
    quotas: dict[tuple[str, str], dict] = field(default_factory=dict)  # (provider, name) -> values + "models"
    models: dict[str, dict] = field(default_factory=dict)  # key -> values + "provider"
    categories: dict[str, dict] = field(default_factory=dict)
    tiers: dict[str, ChainPlan] = field(default_factory=dict)
    routes: dict[tuple[str, str], ChainPlan] = field(default_factory=dict)
    default_tier: str | None = None
    # The validated value of each section another app owns (router.policy.sections) that the document writes.
    owned: dict[str, Any] = field(default_factory=dict)
    # Where each object is in the file, for messages about it.
    where: dict[tuple[str, Any], str] = field(default_factory=dict)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _did_you_mean(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key: Any, allowed: tuple[str, ...]) -> str:
    return "unknown key" + (_did_you_mean(key, list(allowed)) or f" (allowed: {', '.join(allowed)})")


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


class Validator:
    """Reads a document into a Plan, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.plan = Plan()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def validate(self, data: dict) -> Plan:
        allowed = (*TOP_LEVEL_KEYS, *(section.name for section in owned_sections.registered()))
        for key in data:
            if key not in allowed:
                self.problem(str(key), _unknown_key(key, allowed))
        if "version" in data and (isinstance(data["version"], bool) or data["version"] != 1):
            self.problem("version", f"must be 1, got {_show(data['version'])}")
        sections = {name: self.section(data, name) for name in SECTIONS}
        pools = [self.provider(item, f"providers[{i}]") for i, item in enumerate(sections["providers"])]
        for i, item in enumerate(sections["models"]):
            self.model(item, f"models[{i}]")
        for provider_slug, pool in pools:
            self.pool_references(provider_slug, pool)
        for i, item in enumerate(sections["categories"]):
            self.category(item, f"categories[{i}]")
        for i, item in enumerate(sections["tiers"]):
            self.tier(item, f"tiers[{i}]")
        for i, item in enumerate(sections["routes"]):
            self.route(item, f"routes[{i}]")
        self.default_tier(data.get("default_tier"))
        for section in owned_sections.registered():
            if section.name in data:
                self.plan.owned[section.name] = section.validate(data[section.name], self.plan, self.problem)
        self.synced_quotas()
        if self.problems:
            raise PolicyError(self.problems)
        return self.plan

    def section(self, data: dict, name: str) -> list:
        if name not in data:
            self.problem(name, "is required (write an empty list, [], for none)")
            return []
        if not isinstance(data[name], list):
            self.problem(name, f"must be a list, got {type_name(data[name])}")
            return []
        return data[name]

    def mapping(self, item: Any, where: str, allowed: tuple[str, ...]) -> bool:
        if not isinstance(item, dict):
            self.problem(where, f"must be a mapping, got {type_name(item)}")
            return False
        for key in item:
            if key in SECRET_KEYS:
                self.problem(f"{where}.{key}", "secrets are never read from the policy file: set the secret in the admin "
                             "(the provider's page, 'New secret'), or name an environment variable in credential_env")
            elif key not in allowed:
                self.problem(f"{where}.{key}", _unknown_key(key, allowed))
        return True

    def fields(self, item: dict, where: str, model: type[db_models.Model], names: tuple[str, ...]) -> dict:
        """The values of the keys that are fields of `model`, checked as the model checks them.

        A value with a problem is left out, so that callers can still register what is valid (and
        references to it do not report follow-on problems).
        """
        values = {}
        for name in names:
            model_field = model._meta.get_field(name)
            raw = item.get(name)
            if raw is not None:
                value = self.value(model_field, raw, f"{where}.{name}")
                if value is not None:
                    values[name] = value
            elif model_field.has_default() or model_field.blank:
                values[name] = model_field.get_default()
            else:
                self.problem(f"{where}.{name}", "is required")
        return values

    def value(self, model_field: db_models.Field, raw: Any, where: str) -> Any:
        if isinstance(model_field, db_models.BooleanField):
            if not isinstance(raw, bool):
                self.problem(where, f"must be true or false, got {_show(raw)}")
                return None
            value = raw
        elif isinstance(model_field, db_models.IntegerField):
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.problem(where, f"must be a whole number, got {_show(raw)}")
                return None
            value = raw
        elif isinstance(model_field, db_models.DecimalField):
            value = _to_decimal(raw)
            if value is None:
                self.problem(where, f"must be a number, got {_show(raw)}")
                return None
        else:
            if not isinstance(raw, str):
                self.problem(where, f"must be a string, got {_show(raw)}")
                return None
            value = raw
        name = model_field.name
        if name in RANGES and not RANGES[name][0](value):
            self.problem(where, f"{RANGES[name][1]}, got {_show(raw)}")
            return None
        if model_field.choices:
            choices = [str(choice) for choice, _ in model_field.choices]
            if value not in choices:
                self.problem(where, f"must be one of {', '.join(choices)}, got {_show(raw)}")
                return None
        try:
            return model_field.clean(value, None)
        except ValidationError as exc:
            self.problem(where, " ".join(exc.messages))
            return None

    def unique(self, kind: str, key: Any, where: str, label: str) -> bool:
        """Records where `key` is defined; False (with a problem) if it already was."""
        if (kind, key) in self.plan.where:
            self.problem(where, f"duplicate {label} (also {self.plan.where[(kind, key)]})")
            return False
        self.plan.where[(kind, key)] = where
        return True

    def model_list(self, keys: Any, where: str, at_least_one: bool) -> list[str] | None:
        if not isinstance(keys, list):
            self.problem(where, f"must be a list of model keys, got {type_name(keys)}")
            return None
        if at_least_one and not keys:
            self.problem(where, "must list at least one model")
            return None
        result = []
        for i, key in enumerate(keys):
            if not isinstance(key, str):
                self.problem(f"{where}[{i}]", f"must be a model key, got {_show(key)}")
            elif key in result:
                self.problem(f"{where}[{i}]", f"model {key!r} is listed twice")
            else:
                result.append(key)
        return result

    def known_model(self, key: str, where: str) -> bool:
        if key not in self.plan.models:
            self.problem(where, f"unknown model {key!r}{_did_you_mean(key, list(self.plan.models))}")
            return False
        return True

    def provider(self, item: Any, where: str) -> tuple[str | None, list]:
        """Reads a provider; returns its slug and its pools (checked once the models are known)."""
        if not self.mapping(item, where, (*PROVIDER_FIELDS, "quotas")):
            return None, []
        values = self.fields(item, where, Provider, PROVIDER_FIELDS)
        if values.get("kind") == ProviderKind.BEDROCK and values.get("region") == "":
            self.problem(f"{where}.region", "a Bedrock provider needs a region")
        if values.get("kind") == ProviderKind.OPENAI_COMPATIBLE and values.get("base_url") == "":
            self.problem(f"{where}.base_url", "an OpenAI-compatible provider needs a base URL")
        for name, check in (("credential_env", check_credential_env), ("base_url", check_base_url)):
            try:
                check(values.get(name) or "")
            except EgressRefused as exc:
                self.problem(f"{where}.{name}", str(exc))
        slug = values.get("slug")
        if slug is None or not self.unique("provider", slug, f"{where}.slug", f"provider {slug!r}"):
            return None, []
        self.plan.providers[slug] = values
        quotas = item.get("quotas", [])
        if not isinstance(quotas, list):
            self.problem(f"{where}.quotas", f"must be a list, got {type_name(quotas)}")
            return slug, []
        return slug, [self.quota(slug, quota, f"{where}.quotas[{i}]") for i, quota in enumerate(quotas)]

    def quota(self, provider_slug: str, item: Any, where: str) -> tuple[str, list[str]] | None:
        if not self.mapping(item, where, (*QUOTA_FIELDS, "models")):
            return None
        pool = self.model_list(item.get("models", []), f"{where}.models", at_least_one=False)
        values = self.fields(item, where, Quota, QUOTA_FIELDS[1:])
        if pool is None or "metric" not in values or "window" not in values:
            return None
        if item.get("name") is None:
            name = automatic_quota_name(values["metric"], values["window"], pool)
            try:
                Quota._meta.get_field("name").clean(name, None)
            except ValidationError as exc:
                self.problem(f"{where}.name", f"the automatic name {name!r} does not fit ({' '.join(exc.messages)}): give the quota a name")
                return None
        else:
            name = self.value(Quota._meta.get_field("name"), item["name"], f"{where}.name")
            if name is None:
                return None
        if not self.unique("quota", (provider_slug, name), where, f"quota {name!r} of provider {provider_slug!r}"):
            return None
        self.plan.quotas[(provider_slug, name)] = {"name": name, **values, "models": pool}
        return name, pool

    def pool_references(self, provider_slug: str | None, pools: list) -> None:
        for pool in pools:
            if provider_slug is None or pool is None:
                continue
            name, keys = pool
            where = self.plan.where[("quota", (provider_slug, name))]
            for i, key in enumerate(keys):
                if not self.known_model(key, f"{where}.models[{i}]"):
                    continue
                owner = self.plan.models[key]["provider"]
                if owner and owner != provider_slug:
                    self.problem(f"{where}.models[{i}]", f"model {key!r} belongs to provider {owner!r}, not {provider_slug!r}")

    def model(self, item: Any, where: str) -> None:
        if not self.mapping(item, where, (*MODEL_FIELDS, "provider")):
            return
        values = self.fields(item, where, LLMModel, MODEL_FIELDS)
        provider_slug = item.get("provider")
        if provider_slug is None:
            self.problem(f"{where}.provider", "is required")
        elif not isinstance(provider_slug, str) or provider_slug not in self.plan.providers:
            known = ", ".join(sorted(self.plan.providers)) or "none"
            self.problem(f"{where}.provider", f"unknown provider {_show(provider_slug)} (known: {known})")
            provider_slug = None
        key = values.get("key")
        if key is None or not self.unique("model", key, f"{where}.key", f"model key {key!r}"):
            return
        # Registered even with a bad provider, so that routes naming it do not report it as unknown.
        self.plan.models[key] = {**values, "provider": provider_slug}
        if provider_slug and "model_id" in values:
            self.unique("model_id", (provider_slug, values["model_id"]), f"{where}.model_id",
                        f"model_id {values['model_id']!r} at provider {provider_slug!r}")

    def category(self, item: Any, where: str) -> None:
        if not self.mapping(item, where, CATEGORY_FIELDS):
            return
        values = self.fields(item, where, Category, CATEGORY_FIELDS)
        if "slug" in values and self.unique("category", values["slug"], f"{where}.slug", f"category {values['slug']!r}"):
            self.plan.categories[values["slug"]] = values

    def tier(self, item: Any, where: str) -> None:
        if not self.mapping(item, where, ("slug", *CHAIN_FIELDS)):
            return
        values = self.fields(item, where, Tier, ("slug",))
        chain = self.chain(item, where, Tier)
        if "slug" not in values or chain is None:
            return
        if self.unique("tier", values["slug"], f"{where}.slug", f"tier {values['slug']!r}"):
            self.plan.tiers[values["slug"]] = chain

    def route(self, item: Any, where: str) -> None:
        if not self.mapping(item, where, ("category", "complexity", *CHAIN_FIELDS)):
            return
        values = self.fields(item, where, Route, ("complexity",))
        category = item.get("category")
        if category is None:
            self.problem(f"{where}.category", "is required")
        elif not isinstance(category, str) or category not in self.plan.categories:
            known = ", ".join(sorted(self.plan.categories)) or "none"
            self.problem(f"{where}.category", f"unknown category {_show(category)} (known: {known})")
            category = None
        chain = self.chain(item, where, Route)
        if "complexity" not in values or chain is None or category is None:
            return
        key = (category, values["complexity"])
        if self.unique("route", key, where, f"route for ({category}, {values['complexity']})"):
            self.plan.routes[key] = chain

    def known_models(self, item: dict, name: str, where: str, required: bool) -> list[str] | None:
        """An ordered list of known model keys under `name` ([] when absent and not required)."""
        if name not in item:
            if required:
                self.problem(f"{where}.{name}", "is required")
                return None
            return []
        keys = self.model_list(item[name], f"{where}.{name}", at_least_one=required)
        if keys is None:
            return None
        known = [self.known_model(key, f"{where}.{name}[{i}]") for i, key in enumerate(keys)]
        return keys if all(known) else None

    def chain(self, item: dict, where: str, model: type[db_models.Model]) -> ChainPlan | None:
        """The ordered models of a route or tier (the primary first, then the fallback chain), its escalation
        list and its attempt limits."""
        keys = self.known_models(item, "models", where, required=True)
        escalation = self.known_models(item, "escalation", where, required=False)
        limits = self.fields(item, where, model, ("escalate_after", "max_attempts"))
        if keys is None or escalation is None or len(limits) < 2:
            return None
        escalate_after, max_attempts = limits["escalate_after"], limits["max_attempts"]
        if escalation and escalation == keys:
            self.problem(f"{where}.escalation", "repeats the route's models: escalate to other models, or leave it out")
        elif bool(escalation) != (escalate_after is not None):
            self.problem(f"{where}.escalate_after" if escalation else f"{where}.escalation",
                         "an escalation list needs escalate_after" if escalation else "escalate_after needs an escalation list")
        elif escalate_after is not None and max_attempts is not None and max_attempts < escalate_after:
            self.problem(f"{where}.max_attempts", f"must be at least escalate_after ({escalate_after}), got {max_attempts}")
        else:
            return ChainPlan(keys, escalation, escalate_after, max_attempts)
        return None

    def default_tier(self, slug: Any) -> None:
        if slug is None:
            return
        if not isinstance(slug, str) or slug not in self.plan.tiers:
            known = ", ".join(sorted(self.plan.tiers)) or "none"
            self.problem("default_tier", f"unknown tier {_show(slug)} (known: {known})")
            return
        self.plan.default_tier = slug

    def synced_quotas(self) -> None:
        """Quotas synced from AWS stay as they are; the document may not pull anything from under them."""
        synced = Quota.objects.filter(source=Quota.Source.AWS).select_related("provider").prefetch_related("models")
        for quota in synced:
            slug = quota.provider.slug
            label = f"{slug}/{quota.name}"
            if slug not in self.plan.providers:
                self.problem("providers", f"provider {slug!r} is missing, but quota {label!r} synced from AWS Service Quotas "
                             "belongs to it: keep the provider, or delete it in the admin")
                continue
            if (slug, quota.name) in self.plan.quotas:
                self.problem(self.plan.where[("quota", (slug, quota.name))] + ".name",
                             f"{quota.name!r} is the name of a quota synced from AWS Service Quotas: choose another name")
            for model in quota.models.all():
                planned = self.plan.models.get(model.key)
                if planned is None:
                    self.problem("models", f"model {model.key!r} is missing, but quota {label!r} synced from AWS Service Quotas draws on it")
                elif planned["provider"] != slug:
                    self.problem(self.plan.where[("model", model.key)].removesuffix(".key") + ".provider",
                                 f"must stay {slug!r}: quota {label!r} synced from AWS Service Quotas draws on this model")
