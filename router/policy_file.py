"""The policy file: the routing policy as code (YAML or JSON, see policy.example.yaml).

`parse_policy` reads a document, `apply_policy` validates it whole and then makes the database equal
to it in one transaction, `export_policy` and `dump_policy` write the current policy back in the same
format. Importing an export changes nothing, not even the policy version.
"""

import difflib
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import models as db_models
from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat

from providers.models import LLMModel, Provider, Quota
from router import versioning
from router.models import Category, Complexity, Policy, Route, RouteModel, Tier, TierModel

SECTIONS = ("providers", "models", "tiers", "categories", "routes")
TOP_LEVEL_KEYS = ("version", "default_tier", *SECTIONS)
PROVIDER_FIELDS = (
    "slug", "kind", "base_url", "region", "aws_profile", "credential_env", "enabled", "allow_global_profile",
    "probe_models", "request_timeout_seconds", "cooldown_failures", "cooldown_window_seconds", "cooldown_seconds",
)
QUOTA_FIELDS = ("name", "metric", "window", "reset", "limit", "soft_limit_ratio")
MODEL_FIELDS = ("key", "model_id", "input_cost_per_mtok", "output_cost_per_mtok", "context_window", "enabled")
CATEGORY_FIELDS = ("slug", "fallback", "may_use_headroom", "description")
# Exported even when equal to their default, because a reader needs them to understand the entry.
ALWAYS_EXPORTED = {"slug", "kind", "key", "model_id", "context_window", "metric", "window", "limit", "soft_limit_ratio", "fallback"}
# Keys a provider entry may never carry: secrets are write-only and are set in the admin.
SECRET_KEYS = {"secret", "encrypted_secret", "new_secret", "api_key"}
COMPLEXITY_ORDER = [Complexity.LOW, Complexity.MEDIUM, Complexity.HIGH, Complexity.ANY]
RANGES = {
    "limit": (lambda d: d > 0, "must be above 0"),
    "soft_limit_ratio": (lambda d: 0 < d <= 1, "must be above 0 and at most 1"),
    "input_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "output_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "context_window": (lambda d: d >= 1, "must be at least 1"),
    "request_timeout_seconds": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_failures": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_window_seconds": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_seconds": (lambda d: d >= 1, "must be at least 1"),
}
CHANGE_REASON = "policy import"


class PolicyError(Exception):
    """A policy document that cannot be applied; `problems` says what is wrong, and where."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# Reading ------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key written twice in one mapping (YAML would keep the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


def parse_policy(text: str, fmt: str = "yaml") -> dict:
    """Reads a policy document; raises PolicyError with the line and column of a syntax error."""
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise PolicyError([f"line {exc.lineno}, column {exc.colno}: JSON error: {exc.msg}"]) from exc
        except ValueError as exc:
            raise PolicyError([f"JSON error: {exc}"]) from exc
    elif fmt == "yaml":
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise PolicyError([f"{where}YAML error: {exc.problem or exc.context}"]) from exc
        except yaml.YAMLError as exc:
            raise PolicyError([f"YAML error: {exc}"]) from exc
    else:
        raise ValueError(f"Unknown policy format {fmt!r}: use 'yaml' or 'json'.")
    if data is None:
        raise PolicyError(["top level: the document is empty"])
    if not isinstance(data, dict):
        raise PolicyError([f"top level: must be a mapping with the keys {', '.join(TOP_LEVEL_KEYS)}, got {_type_name(data)}"])
    return data


# Validating ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """A validated document: the field values of every object, keyed the way the database is."""

    providers: dict[str, dict] = field(default_factory=dict)
    quotas: dict[tuple[str, str], dict] = field(default_factory=dict)  # (provider, name) -> values + "models"
    models: dict[str, dict] = field(default_factory=dict)  # key -> values + "provider"
    categories: dict[str, dict] = field(default_factory=dict)
    tiers: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    default_tier: str | None = None
    # Where each object is in the file, for messages about it.
    where: dict[tuple[str, Any], str] = field(default_factory=dict)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else type(value).__name__


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


class _Validator:
    """Reads a document into a _Plan, collecting every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.plan = _Plan()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def validate(self, data: dict) -> _Plan:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.problem(str(key), _unknown_key(key, TOP_LEVEL_KEYS))
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
        self.synced_quotas()
        if self.problems:
            raise PolicyError(self.problems)
        return self.plan

    def section(self, data: dict, name: str) -> list:
        if name not in data:
            self.problem(name, "is required (write an empty list, [], for none)")
            return []
        if not isinstance(data[name], list):
            self.problem(name, f"must be a list, got {_type_name(data[name])}")
            return []
        return data[name]

    def mapping(self, item: Any, where: str, allowed: tuple[str, ...]) -> bool:
        if not isinstance(item, dict):
            self.problem(where, f"must be a mapping, got {_type_name(item)}")
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
            self.problem(where, f"must be a list of model keys, got {_type_name(keys)}")
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
        if values.get("kind") == Provider.Kind.BEDROCK and values.get("region") == "":
            self.problem(f"{where}.region", "a Bedrock provider needs a region")
        if values.get("kind") == Provider.Kind.OPENAI_COMPATIBLE and values.get("base_url") == "":
            self.problem(f"{where}.base_url", "an OpenAI-compatible provider needs a base URL")
        slug = values.get("slug")
        if slug is None or not self.unique("provider", slug, f"{where}.slug", f"provider {slug!r}"):
            return None, []
        self.plan.providers[slug] = values
        quotas = item.get("quotas", [])
        if not isinstance(quotas, list):
            self.problem(f"{where}.quotas", f"must be a list, got {_type_name(quotas)}")
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
        if not self.mapping(item, where, ("slug", "models")):
            return
        values = self.fields(item, where, Tier, ("slug",))
        keys = self.chain(item, where)
        if "slug" not in values or keys is None:
            return
        if self.unique("tier", values["slug"], f"{where}.slug", f"tier {values['slug']!r}"):
            self.plan.tiers[values["slug"]] = keys

    def route(self, item: Any, where: str) -> None:
        if not self.mapping(item, where, ("category", "complexity", "models")):
            return
        values = self.fields(item, where, Route, ("complexity",))
        category = item.get("category")
        if category is None:
            self.problem(f"{where}.category", "is required")
        elif not isinstance(category, str) or category not in self.plan.categories:
            known = ", ".join(sorted(self.plan.categories)) or "none"
            self.problem(f"{where}.category", f"unknown category {_show(category)} (known: {known})")
            category = None
        keys = self.chain(item, where)
        if "complexity" not in values or keys is None or category is None:
            return
        key = (category, values["complexity"])
        if self.unique("route", key, where, f"route for ({category}, {values['complexity']})"):
            self.plan.routes[key] = keys

    def chain(self, item: dict, where: str) -> list[str] | None:
        """The ordered models of a route or tier: the primary first, then the fallback chain."""
        if "models" not in item:
            self.problem(f"{where}.models", "is required")
            return None
        keys = self.model_list(item["models"], f"{where}.models", at_least_one=True)
        if keys is None:
            return None
        known = [self.known_model(key, f"{where}.models[{i}]") for i, key in enumerate(keys)]
        return keys if all(known) else None

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


def automatic_quota_name(metric: str, window: str, pool: list[str]) -> str:
    """The name of a quota that the file leaves unnamed, e.g. tokens-day or requests-minute-bedrock-sonnet-4-5."""
    name = f"{metric}-{window}"
    return name + "-" + "-".join(sorted(pool)) if pool else name


# Applying -----------------------------------------------------------------------------------------


class _Applier:
    """Makes the database equal to a validated plan, writing only rows that differ."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.changed = False

    def save(self, obj: db_models.Model, **kwargs: Any) -> None:
        obj._change_reason = CHANGE_REASON
        obj.save(**kwargs)
        self.changed = True

    def delete(self, obj: db_models.Model) -> None:
        obj._change_reason = CHANGE_REASON
        obj.delete()
        self.changed = True

    def update(self, obj: db_models.Model, values: dict) -> None:
        differs = {name: value for name, value in values.items() if getattr(obj, name) != value}
        if differs:
            for name, value in differs.items():
                setattr(obj, name, value)
            # Only the changed columns: the availability refresh or an admin may be writing the others meanwhile.
            touched = [*differs, *(["updated_at"] if hasattr(obj, "updated_at") else [])]
            self.save(obj, update_fields=touched)

    def run(self) -> bool:
        plan = self.plan
        providers = {p.slug: p for p in Provider.objects.all()}
        models = {m.key: m for m in LLMModel.objects.select_related("provider")}
        quotas = {(q.provider.slug, q.name): q for q in
                  Quota.objects.filter(source=Quota.Source.MANUAL).select_related("provider").prefetch_related("models")}
        categories = {c.slug: c for c in Category.objects.all()}
        tiers = {t.slug: t for t in Tier.objects.prefetch_related(_entries(TierModel))}
        routes = {(r.category.slug, r.complexity): r for r in Route.objects.select_related("category").prefetch_related(_entries(RouteModel))}
        key_of = {m.pk: key for key, m in models.items()}

        # Take away first, references before what they point to: model lists, quotas, models, providers.
        for key, route in routes.items():
            self.drop_or_clear(route, plan.routes.get(key), key_of)
        for slug, tier in tiers.items():
            self.drop_or_clear(tier, plan.tiers.get(slug), key_of)
        for group, wanted in ((categories, plan.categories), (quotas, plan.quotas), (models, plan.models), (providers, plan.providers)):
            for key in [key for key in group if key not in wanted]:
                self.delete(group.pop(key))

        for slug, values in plan.providers.items():
            self.put(providers, slug, Provider, values)
        self.put_models(models, providers)
        for (provider_slug, name), values in plan.quotas.items():
            fields = {k: v for k, v in values.items() if k != "models"}
            quota = self.put(quotas, (provider_slug, name), Quota, {**fields, "provider": providers[provider_slug]})
            wanted = {models[key].pk for key in values["models"]}
            if {m.pk for m in quota.models.all()} != wanted:
                quota._change_reason = CHANGE_REASON
                quota.models.set(wanted)
                self.changed = True
        for slug, values in plan.categories.items():
            self.put(categories, slug, Category, values)
        for slug, keys in plan.tiers.items():
            tier = self.put(tiers, slug, Tier, {"slug": slug})
            self.fill(tier, TierModel, "tier", keys, models)
        for (category_slug, complexity), keys in plan.routes.items():
            route = self.put(routes, (category_slug, complexity), Route, {"category": categories[category_slug], "complexity": complexity})
            self.fill(route, RouteModel, "route", keys, models)

        policy = Policy.objects.get(pk=1)
        default_tier = tiers[plan.default_tier] if plan.default_tier else None
        if policy.default_tier_id != (default_tier.pk if default_tier else None):
            policy.default_tier = default_tier
            self.save(policy, update_fields=["default_tier", "updated_at"])
        return self.changed

    def put(self, existing: dict, key: Any, model: type[db_models.Model], values: dict) -> Any:
        """Updates the row under `key`, or creates it."""
        if key in existing:
            self.update(existing[key], values)
        else:
            existing[key] = model(**values)
            self.save(existing[key])
        return existing[key]

    def put_models(self, models: dict[str, LLMModel], providers: dict[str, Provider]) -> None:
        moving = []
        for key, values in self.plan.models.items():
            model = models.get(key)
            if model and (model.provider_id, model.model_id) != (providers[values["provider"]].pk, values["model_id"]):
                moving.append(model.pk)
        # Park the ids that change under placeholders first, so that two models may swap ids without
        # tripping the (provider, model_id) unique constraint halfway.
        LLMModel.objects.filter(pk__in=moving).update(model_id=Concat(Value("moving-"), Cast("pk", CharField())))
        for key, values in self.plan.models.items():
            fields = {**values, "provider": providers[values["provider"]]}
            if models.get(key) and models[key].pk in moving:
                # The resolved id and availability were about the old model; the next refresh resolves them again.
                fields.update(invoke_id="", availability=LLMModel.Availability.UNKNOWN,
                              availability_reason="model_id changed; waiting for the next availability refresh", checked_at=None)
            self.put(models, key, LLMModel, fields)

    def drop_or_clear(self, owner: Route | Tier, wanted: list[str] | None, key_of: dict[int, str]) -> None:
        """Deletes a route or tier the document no longer has, or empties its model list if that list changes."""
        if wanted is None:
            self.delete(owner)
        elif [key_of.get(entry.model_id) for entry in owner.entries.all()] != wanted:
            for entry in owner.entries.all():
                self.delete(entry)

    def fill(self, owner: Route | Tier, entry_model: type[db_models.Model], owner_field: str, keys: list[str],
             models: dict[str, LLMModel]) -> None:
        """Writes the model list of a new route or tier, or of one that drop_or_clear emptied."""
        if entry_model.objects.filter(**{owner_field: owner}).exists():
            return
        for position, key in enumerate(keys, start=1):
            self.save(entry_model(**{owner_field: owner, "model": models[key], "position": position}))


def apply_policy(data: dict) -> bool:
    """Validates a whole policy document, then makes the database equal to it in one transaction.

    Raises PolicyError listing every problem (and changes nothing) if the document is invalid.
    Returns True if anything changed; the policy version is bumped once if so, and not at all otherwise.
    """
    if not isinstance(data, dict):
        raise PolicyError([f"top level: must be a mapping, got {_type_name(data)}"])
    Policy.current()
    with transaction.atomic(), versioning.one_version_bump():
        # One import at a time: the second waits for the first, then sees its result.
        Policy.objects.select_for_update().get(pk=1)
        plan = _Validator().validate(data)
        return _Applier(plan).run()


# Writing ------------------------------------------------------------------------------------------


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
    document["tiers"] = [
        {"slug": tier.slug, "models": [entry.model.key for entry in tier.entries.all()]}
        for tier in Tier.objects.order_by("slug").prefetch_related(_entries(TierModel))
    ]
    document["categories"] = [_export_fields(category, CATEGORY_FIELDS) for category in Category.objects.order_by("slug")]
    routes = Route.objects.select_related("category").prefetch_related(_entries(RouteModel))
    document["routes"] = [
        {"category": route.category.slug, "complexity": route.complexity, "models": [entry.model.key for entry in route.entries.all()]}
        for route in sorted(routes, key=lambda r: (r.category.slug, COMPLEXITY_ORDER.index(r.complexity)))
    ]
    return document


def _entries(entry_model: type[db_models.Model]) -> db_models.Prefetch:
    return db_models.Prefetch("entries", queryset=entry_model.objects.select_related("model").order_by("position", "pk"))


def _export_quota(quota: Quota) -> dict:
    pool = sorted(model.key for model in quota.models.all())
    entry = _export_fields(quota, QUOTA_FIELDS)
    if entry.get("name") == automatic_quota_name(quota.metric, quota.window, pool):
        del entry["name"]
    if pool:
        entry["models"] = pool
    return entry


def dump_policy(data: dict, fmt: str = "yaml") -> str:
    """Writes a policy document as YAML (keys in document order) or indented JSON."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    raise ValueError(f"Unknown policy format {fmt!r}: use 'yaml' or 'json'.")
