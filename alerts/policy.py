"""The policy document's `alerts` section: the alert rules, validated, applied and exported the way the rest of the
policy is (registered with router.policy.sections when the app is ready).

    alerts:
      - slug: quota-hard-limit-soon
        condition: quota_forecast
        within_minutes: 30
        severity: critical
"""

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models as db_models

from alerts.models import PARAMETERS, REQUIRED_PARAMETERS, AlertRule, Condition
from router.policy.sections import Reporter, Section

COMMON_FIELDS = ("slug", "condition", "severity", "enabled", "repeat_minutes", "description")
PARAMETER_FIELDS = ("within_minutes", "percent", "category", "min_decisions", "for_minutes", "seconds")
FIELDS = (*COMMON_FIELDS, *PARAMETER_FIELDS)


def _value(name: str, raw: Any, where: str, problem: Reporter) -> Any:
    """`raw` as the rule's field `name` holds it, or None (with a problem)."""
    model_field = AlertRule._meta.get_field(name)
    if isinstance(model_field, db_models.BooleanField):
        ok = isinstance(raw, bool)
        expected = "true or false"
    elif isinstance(model_field, db_models.IntegerField):
        ok = isinstance(raw, int) and not isinstance(raw, bool)
        expected = "a whole number"
    elif isinstance(model_field, db_models.DecimalField):
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        raw = Decimal(repr(raw)) if ok else raw
        expected = "a number"
    else:
        ok = isinstance(raw, str)
        expected = "a string"
    if not ok:
        problem(where, f"must be {expected}, got {raw!r}")
        return None
    if model_field.choices and raw not in [choice for choice, _ in model_field.choices]:
        problem(where, f"must be one of {', '.join(choice for choice, _ in model_field.choices)}, got {raw!r}")
        return None
    try:
        return model_field.clean(raw, None)
    except ValidationError as exc:
        problem(where, " ".join(exc.messages))
        return None


def _rule(item: Any, where: str, plan: Any, problem: Reporter) -> dict | None:
    if not isinstance(item, dict):
        problem(where, "must be a mapping")
        return None
    values, valid = {}, True
    for key, raw in item.items():
        if key not in FIELDS:
            problem(f"{where}.{key}", f"unknown key (allowed: {', '.join(FIELDS)})")
            valid = False
        elif raw is not None:
            values[key] = _value(key, raw, f"{where}.{key}", problem)
            valid = valid and values[key] is not None
    for required in ("slug", "condition"):
        if required not in item:
            problem(f"{where}.{required}", "is required")
            valid = False
    condition = values.get("condition")
    if condition:
        reads = PARAMETERS[Condition(condition)]
        for name in PARAMETER_FIELDS:
            if name in item and name not in reads:
                problem(f"{where}.{name}", f"is not read by condition {condition}" + (f" (it reads {', '.join(reads)})" if reads else ""))
                valid = False
            elif name in reads and name in REQUIRED_PARAMETERS and item.get(name) is None:
                problem(f"{where}.{name}", f"is required by condition {condition}")
                valid = False
    if values.get("category") and values["category"] not in plan.categories:
        problem(f"{where}.category", f"unknown category {values['category']!r} (known: {', '.join(sorted(plan.categories)) or 'none'})")
        valid = False
    if not valid:
        return None
    return {name: values.get(name, AlertRule._meta.get_field(name).get_default()) for name in FIELDS}


def validate(raw: Any, plan: Any, problem: Reporter) -> list[dict]:
    """The document's alert rules as field values; every problem reported with its place (`alerts[2].percent`)."""
    if not isinstance(raw, list):
        problem("alerts", "must be a list (write an empty list, [], for none)")
        return []
    rules, seen = [], {}
    for i, item in enumerate(raw):
        rule = _rule(item, f"alerts[{i}]", plan, problem)
        if rule is None:
            continue
        if rule["slug"] in seen:
            problem(f"alerts[{i}].slug", f"duplicate alert rule {rule['slug']!r} (also {seen[rule['slug']]})")
            continue
        seen[rule["slug"]] = f"alerts[{i}]"
        rules.append(rule)
    return rules


def apply(rules: list[dict], author: Any) -> bool:
    """Makes the stored rules equal to `rules`, writing only those that differ; True if anything changed."""
    existing = {rule.slug: rule for rule in AlertRule.objects.all()}
    wanted = {rule["slug"]: rule for rule in rules}
    changed = False
    for slug in existing.keys() - wanted.keys():
        existing[slug].delete()
        changed = True
    for slug, values in wanted.items():
        rule = existing.get(slug)
        if rule is None:
            AlertRule.objects.create(**values)
            changed = True
        elif differs := [name for name, value in values.items() if getattr(rule, name) != value]:
            for name in differs:
                setattr(rule, name, values[name])
            rule.save(update_fields=[*differs, "updated_at"])
            changed = True
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def export() -> list[dict]:
    """The stored rules, sorted by slug, without default values."""
    exported = []
    for rule in AlertRule.objects.order_by("slug"):
        entry = {}
        for name in FIELDS:
            value = getattr(rule, name)
            if name in ("slug", "condition") or value != AlertRule._meta.get_field(name).get_default():
                entry[name] = _plain(value)
        exported.append(entry)
    return exported


SECTION = Section(name="alerts", kind="alert", model_label="alerts.alertrule", name_of=lambda entry: entry["slug"],
                  validate=validate, apply=apply, export=export)
