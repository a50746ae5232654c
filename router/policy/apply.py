"""Applying a validated policy: the database made equal to the document in one transaction."""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models as db_models
from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat

from providers.models import LLMModel, Provider, Quota
from router import versioning
from router.models import Category, Policy, PolicyVersion, Route, RouteEscalation, RouteModel, Tier, TierEscalation, TierModel
from router.policy import sections, versions
from router.policy.export import entries
from router.policy.fields import PolicyError, type_name
from router.policy.validate import ChainPlan, Plan, Validator
from switchboard.vocabulary import Availability


@dataclass(frozen=True)
class Author:
    """Who applies a policy, as each object's edit history records it: a user, or the name of an API key or command."""

    name: str
    user: AbstractBaseUser | None = None


# The author of a policy applied from the command line.
COMMAND = Author("manage.py import_policy")


class _Applier:
    """Makes the database equal to a validated plan, writing only rows that differ."""

    def __init__(self, plan: Plan, author: Author) -> None:
        self.plan = plan
        self.author = author
        self.changed = False

    def record(self, obj: db_models.Model) -> None:
        """What the edit history keeps of this change: by whom, and why."""
        obj._history_user = self.author.user
        obj._change_reason = f"policy import by {self.author.name}"

    def save(self, obj: db_models.Model, **kwargs: Any) -> None:
        self.record(obj)
        obj.save(**kwargs)
        self.changed = True

    def delete(self, obj: db_models.Model) -> None:
        self.record(obj)
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
        tiers = {t.slug: t for t in Tier.objects.prefetch_related(entries(TierModel), entries(TierEscalation, "escalation"))}
        routes = {(r.category.slug, r.complexity): r for r in Route.objects.select_related("category")
                  .prefetch_related(entries(RouteModel), entries(RouteEscalation, "escalation"))}
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
                self.record(quota)
                quota.models.set(wanted)
                self.changed = True
        for slug, values in plan.categories.items():
            self.put(categories, slug, Category, values)
        for slug, chain in plan.tiers.items():
            tier = self.put(tiers, slug, Tier, {"slug": slug, **self.limits(chain)})
            self.fill(tier, TierModel, "tier", chain.models, models)
            self.fill(tier, TierEscalation, "tier", chain.escalation, models)
        for (category_slug, complexity), chain in plan.routes.items():
            route = self.put(routes, (category_slug, complexity), Route,
                             {"category": categories[category_slug], "complexity": complexity, **self.limits(chain)})
            self.fill(route, RouteModel, "route", chain.models, models)
            self.fill(route, RouteEscalation, "route", chain.escalation, models)

        policy = Policy.objects.get(pk=1)
        default_tier = tiers[plan.default_tier] if plan.default_tier else None
        if policy.default_tier_id != (default_tier.pk if default_tier else None):
            policy.default_tier = default_tier
            self.save(policy, update_fields=["default_tier", "updated_at"])
        for name, value in plan.owned.items():
            self.changed = sections.get(name).apply(value, self.author) or self.changed
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
                fields.update(invoke_id="", availability=Availability.UNKNOWN,
                              availability_reason="model_id changed; waiting for the next availability refresh", checked_at=None)
            self.put(models, key, LLMModel, fields)

    @staticmethod
    def limits(chain: ChainPlan) -> dict:
        return {"escalate_after": chain.escalate_after, "max_attempts": chain.max_attempts}

    def drop_or_clear(self, owner: Route | Tier, wanted: ChainPlan | None, key_of: dict[int, str]) -> None:
        """Deletes a route or tier the document no longer has, or empties each of its model lists that changes.
        Its entries are deleted one by one first, so that each one's history names the author too."""
        for entries_now, keys in ((owner.entries.all(), wanted and wanted.models), (owner.escalation.all(), wanted and wanted.escalation)):
            if wanted is None or [key_of.get(entry.model_id) for entry in entries_now] != keys:
                for entry in entries_now:
                    self.delete(entry)
        if wanted is None:
            self.delete(owner)

    def fill(self, owner: Route | Tier, entry_model: type[db_models.Model], owner_field: str, keys: list[str],
             models: dict[str, LLMModel]) -> None:
        """Writes the model list of a new route or tier, or of one that drop_or_clear emptied."""
        if entry_model.objects.filter(**{owner_field: owner}).exists():
            return
        for position, key in enumerate(keys, start=1):
            self.save(entry_model(**{owner_field: owner, "model": models[key], "position": position}))


def apply_policy(data: dict, author: Author = COMMAND, source: str = PolicyVersion.Source.COMMAND, comment: str = "") -> bool:
    """Validates a whole policy document, then makes the database equal to it in one transaction.

    Raises PolicyError listing every problem (and changes nothing) if the document is invalid.
    Returns True if anything changed; the policy version is bumped once if so, and not at all otherwise,
    and the change is stored in the policy's history (router.policy.versions) with its author, source and comment.
    """
    if not isinstance(data, dict):
        raise PolicyError([f"top level: must be a mapping, got {type_name(data)}"])
    with transaction.atomic():
        with versioning.one_version_bump():
            # One edit at a time: the second waits for the first, then sees its result.
            versions.lock_policy()
            plan = Validator().validate(data)
            changed = _Applier(plan, author).run()
        if changed:
            versions.record_version(author.name, source, comment, author.user)
        return changed


def apply_version(number: int, author: Author, comment: str = "") -> bool:
    """Restores the policy as it stood at version `number`, as a new version; False if it already stands so.

    Raises versions.UnknownVersion, or PolicyError when that version no longer fits today's catalog (a quota
    synced from AWS since, say); nothing is changed then. Stored provider secrets are never part of a version.
    """
    return apply_policy(versions.version_document(number), author, PolicyVersion.Source.ROLLBACK, comment or f"rollback to version {number}")
