"""What changed between two policy documents, in the words import_policy --plan prints: + added, - removed,
~ changed with old -> new, chain entries included."""

from dataclasses import dataclass, field
from typing import Any

from router.policy import sections
from router.policy.fields import automatic_quota_name

# Each section's entries, by what names them.
NAMES = {
    "providers": ("provider", lambda entry: entry["slug"]),
    "models": ("model", lambda entry: entry["key"]),
    "tiers": ("tier", lambda entry: entry["slug"]),
    "categories": ("category", lambda entry: entry["slug"]),
    "routes": ("route", lambda entry: f"{entry['category']}/{entry['complexity']}"),
}


@dataclass(frozen=True)
class Change:
    """One object added, removed or changed; `fields` holds each changed field's (old, new) value (None: the default)."""

    change: str
    kind: str
    name: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.change]
        described = "; ".join(f"{name}: {_shown(old)} -> {_shown(new)}" for name, (old, new) in self.fields.items())
        return f"{sign} {self.kind} {self.name}" + (f": {described}" if described else "")

    def as_dict(self) -> dict:
        return {"change": self.change, "kind": self.kind, "name": self.name,
                "fields": {name: {"old": old, "new": new} for name, (old, new) in self.fields.items()}}

    @classmethod
    def from_dict(cls, stored: dict) -> "Change":
        """A change as as_dict() stored it (a policy version keeps its changes so)."""
        return cls(stored["change"], stored["kind"], stored["name"],
                   {name: (values["old"], values["new"]) for name, values in stored.get("fields", {}).items()})


def _shown(value: Any) -> str:
    return "(default)" if value is None else str(value)


def _objects(document: dict) -> dict[tuple[str, str], dict]:
    """Every object of an exported document by (kind, name), with its fields; quotas apart from their provider."""
    objects = {("policy", "default tier"): {"default_tier": document.get("default_tier")}}
    for section, (kind, name_of) in NAMES.items():
        for entry in document[section]:
            fields = dict(entry)
            for quota in fields.pop("quotas", []) if section == "providers" else []:
                name = quota.get("name") or automatic_quota_name(quota["metric"], quota["window"], quota.get("models", []))
                objects[("quota", f"{entry['slug']}/{name}")] = quota
            objects[(kind, name_of(entry))] = fields
    for section in sections.registered():
        for entry in document.get(section.name, []):
            objects[(section.kind, section.name_of(entry))] = dict(entry)
    return objects


def compare(before: dict, after: dict) -> list[Change]:
    """The changes that turn one exported policy into the other."""
    old, new = _objects(before), _objects(after)
    changes = [Change("removed", *key) for key in sorted(old.keys() - new.keys())]
    changes += [Change("added", *key) for key in sorted(new.keys() - old.keys())]
    for key in sorted(old.keys() & new.keys()):
        names = sorted(old[key].keys() | new[key].keys())
        if differing := {name: (old[key].get(name), new[key].get(name)) for name in names if old[key].get(name) != new[key].get(name)}:
            changes.append(Change("changed", *key, differing))
    return changes
