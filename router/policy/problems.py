"""What is wrong with a policy, said of the objects it concerns rather than of places in a file: the admin
shows "route general/low: models: must list at least one model" where the importer says "routes[3].models: …"."""

import re
from dataclasses import dataclass

from router.policy import sections
from router.policy.fields import PolicyError
from router.policy.validate import Validator

# "routes[3].models[1]: message" -> section, index, the quota's index under a provider, field, message.
PLACE = re.compile(r"\A(?P<section>[a-z_]+)\[(?P<index>\d+)\]"
                   r"(?:\.quotas\[(?P<quota>\d+)\])?(?:\.(?P<field>\w+))?(?:\[\d+\])?: (?P<message>.*)\Z", re.S)
TOP_LEVEL = re.compile(r"\A(?P<field>\w+): (?P<message>.*)\Z", re.S)
KINDS = {"providers": "provider", "models": "model", "tiers": "tier", "categories": "category", "routes": "route"}


@dataclass(frozen=True)
class Problem:
    """One problem of a policy: the object it concerns (kind and name, as the policy history names them), the field, what is wrong."""

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.field + ': ' if self.field else ''}{self.message}"


def _name(document: dict, section: str, index: int, quota: str | None) -> str:
    entry = document[section][index]
    if section not in KINDS:
        return sections.get(section).name_of(entry)
    if quota is not None:
        return f"{entry['slug']}/{entry['quotas'][int(quota)].get('name') or 'quota ' + str(int(quota) + 1)}"
    if section == "routes":
        return f"{entry['category']}/{entry['complexity']}"
    return entry["key"] if section == "models" else entry["slug"]


def locate(problem: str, document: dict) -> Problem:
    """The object a validator problem about `document` concerns."""
    owned = {section.name: section.kind for section in sections.registered()}
    if (match := PLACE.match(problem)) and match["section"] in KINDS.keys() | owned.keys():
        quota = match["quota"]
        kind = "quota" if quota is not None else KINDS.get(match["section"]) or owned[match["section"]]
        return Problem(kind, _name(document, match["section"], int(match["index"]), quota), match["field"] or "", match["message"])
    if (match := TOP_LEVEL.match(problem)) and match["field"] == "default_tier":
        return Problem("policy", "default tier", "default_tier", match["message"])
    return Problem("policy", "", "", problem)


def policy_problems(document: dict) -> list[Problem]:
    """Every problem the importer would find in `document` (an export of the database), by object."""
    try:
        Validator().validate(document)
    except PolicyError as exc:
        return [locate(problem, document) for problem in exc.problems]
    return []


def new_problems(before: dict, after: dict, *, clears_default_tier: bool = False) -> list[Problem]:
    """The problems an edit that turned `before` into `after` would bring: those `after` has and `before` had not,
    and, unless the edit is meant to clear it, the default tier lost (deleting a tier clears it silently)."""
    known = set(policy_problems(before))
    problems = [problem for problem in policy_problems(after) if problem not in known]
    if before.get("default_tier") and not after.get("default_tier") and not clears_default_tier:
        problems.append(Problem("tier", before["default_tier"], "", "is the default tier (used when a request names neither "
                                "category nor tier): choose another default tier on the Policy page first"))
    return problems
