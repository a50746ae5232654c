"""Sections of the policy document that another app owns (the alert rules of `alerts`).

The importer, the exporter, the plan, the history and the admin's check reach such a section only through
this registry, so that router never imports the app that owns it: the app registers its section when it
is ready (`AppConfig.ready`). A registered section is optional in a document: left out, what it holds in
the database stays as it is; written (`[]` for none), the database is made equal to it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# problem(where, message): records one problem at its place in the document ("alerts[2].percent").
Reporter = Callable[[str, str], None]


@dataclass(frozen=True)
class Section:
    """One top-level list of the policy document kept by another app.

    `validate(raw, plan, problem)` reads the document's list (with `plan`, what the rest of the document
    validated to) into what `apply(value, author)` then makes the database hold, returning True if anything
    changed; `export()` gives the list back, sorted and without defaults; `name_of(entry)` names one
    exported entry, as the plan and the history print it (`~ alert quota-soft-limit: ...`). `model_label`
    (`app.model`) is the model whose permissions a logged-in user needs to read or change the section through
    /api/v1/policy.
    """

    name: str
    kind: str
    model_label: str
    name_of: Callable[[dict], str]
    validate: Callable[[Any, Any, Reporter], Any]
    apply: Callable[[Any, Any], bool]
    export: Callable[[], list[dict]]


_sections: dict[str, Section] = {}


def register(section: Section) -> None:
    _sections[section.name] = section


def registered() -> list[Section]:
    return list(_sections.values())


def get(name: str) -> Section:
    return _sections[name]
