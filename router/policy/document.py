"""A policy document as text: read from YAML or JSON, and written back.

Reading is bounded whatever the input: YAML aliases are refused (a few hundred bytes of them expand to
gigabytes), nesting stops at MAX_DEPTH and a document at MAX_DOCUMENT_BYTES (PolicyError caps its
messages too).
"""

import json
from typing import Any

import yaml

from router.policy.fields import TOP_LEVEL_KEYS, PolicyError, type_name

# A policy nests five levels deep (providers[].quotas[].models[]): MAX_DEPTH leaves ample room.
MAX_DEPTH = 32
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases, nesting deeper than MAX_DEPTH, and a key written twice in one
    mapping (YAML would keep the last silently)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a policy document",
                                              self.peek_event().start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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


def _depth(data: Any) -> int:
    """How deeply a parsed document nests (without recursion: the document may be deeper than Python's stack)."""
    deepest, pending = 0, [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def parse_policy(text: str, fmt: str = "yaml") -> dict:
    """Reads a policy document; raises PolicyError with the line and column of a syntax error."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise PolicyError([f"top level: the document has {len(text):,} characters; a policy document may have at most "
                           f"{MAX_DOCUMENT_BYTES:,}"])
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise PolicyError([f"line {exc.lineno}, column {exc.colno}: JSON error: {exc.msg}"]) from exc
        except RecursionError as exc:
            raise PolicyError([f"JSON error: nested deeper than {MAX_DEPTH} levels"]) from exc
        except ValueError as exc:
            raise PolicyError([f"JSON error: {exc}"]) from exc
        if _depth(data) > MAX_DEPTH:
            raise PolicyError([f"JSON error: nested deeper than {MAX_DEPTH} levels"])
    elif fmt == "yaml":
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise PolicyError([f"{where}YAML error: {exc.problem or exc.context}"]) from exc
        except yaml.YAMLError as exc:
            raise PolicyError([f"YAML error: {exc}"]) from exc
        except RecursionError as exc:
            raise PolicyError([f"YAML error: nested deeper than {MAX_DEPTH} levels"]) from exc
    else:
        raise ValueError(f"Unknown policy format {fmt!r}: use 'yaml' or 'json'.")
    if data is None:
        raise PolicyError(["top level: the document is empty"])
    if not isinstance(data, dict):
        raise PolicyError([f"top level: must be a mapping with the keys {', '.join(TOP_LEVEL_KEYS)}, got {type_name(data)}"])
    return data


class _PlainDumper(yaml.SafeDumper):
    """Writes a value used twice in full each time: a policy document never holds aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump_policy(data: dict, fmt: str = "yaml") -> str:
    """Writes a policy document as YAML (keys in document order) or indented JSON."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    raise ValueError(f"Unknown policy format {fmt!r}: use 'yaml' or 'json'.")
