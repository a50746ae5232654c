"""The REST API's one shape per concept (docs/api.md): a time, a model, a decision's trace.

Each shape is declared once, as a msgspec Struct: answers are built from it and encoded by msgspec,
and the OpenAPI schema is generated from it (router.schema). The engine keeps a trace as the
dashboard reads and filters it (router.engine: flat entries, epoch seconds); an answer gives it in
the API's shape, converting only what skipped entries carry.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from router.snapshot import current_snapshot
from switchboard.vocabulary import SkipReason, Verdict


def rfc3339(moment: datetime | float | None) -> str | None:
    """A time as RFC 3339 in UTC with `Z`, from an aware datetime or epoch seconds; None stays None."""
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def as_utc(moment: datetime | float) -> datetime:
    """An aware datetime in UTC, from an aware datetime or epoch seconds (msgspec writes it as RFC 3339 with `Z`)."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return datetime.fromtimestamp(moment, tz=UTC)


# A time in an answer: aware, in UTC, written as RFC 3339 with `Z`.
Time = Annotated[datetime, Meta(tz=True)]


class ModelRef(Struct):
    """A model, as every answer names it."""

    key: str
    provider: Annotated[str | None, Meta(description="The provider's slug; null only for a model no longer in the catalog.")]


class TraceQuota(Struct):
    """A quota that turned a candidate away, as it stood then (amounts in its unit: dollars for cost quotas)."""

    quota: Annotated[str, Meta(description="The quota's label: provider/name.")]
    quota_id: int
    metric: str
    window: str
    reset: str
    used: float
    estimate: float
    soft_limit: float
    limit: float
    frees_at: Annotated[Time | None, Meta(description="When its oldest counted usage leaves the window.")]


class TraceEntry(Struct):
    """One candidate the walk considered."""

    model: ModelRef
    verdict: Literal[tuple(Verdict.values)]
    cause: Annotated[Literal[tuple(SkipReason.values)] | None, Meta(description="Why it was passed over; null when chosen.")]
    reason: Annotated[str, Meta(description="Why it was chosen or passed over, as a sentence.")]
    until: Annotated[Time | None, Meta(description="When its cooldown or provider rate limit ends.")]
    quotas: Annotated[list[TraceQuota], Meta(description="The quotas that turned it away (cause quota).")]


def model_ref(key: str, provider: str | None) -> ModelRef | None:
    """A model as every answer names it; None when there is no model."""
    return ModelRef(key, provider or None) if key else None


def catalog_model_ref(key: str) -> ModelRef | None:
    """The model of the catalog under `key`, named as model_ref does (its provider None if it has left the catalog)."""
    if not key:
        return None
    model = current_snapshot().models.get(key)
    return ModelRef(key, model.provider if model else None)


def trace_entry(entry: dict) -> TraceEntry:
    """One candidate of a stored trace in the API's shape: `model` as an object, `cause` the code of why it was
    passed over (None when chosen), `reason` the sentence, `until` and each blocking quota's `frees_at` as times."""
    chosen = entry["verdict"] == Verdict.CHOSEN
    until = entry.get("until")
    quotas = entry.get("quotas")
    return TraceEntry(
        model=ModelRef(entry["model"], entry.get("provider")),
        verdict=entry["verdict"],
        cause=None if chosen else entry["reason"],
        reason=entry["reason"] if chosen else entry.get("detail", ""),
        until=as_utc(until) if until else None,
        quotas=[TraceQuota(**(quota | {"frees_at": as_utc(quota["frees_at"]) if quota["frees_at"] is not None else None}))
                for quota in quotas] if quotas else [],
    )


def api_trace(trace: list[dict]) -> list[TraceEntry]:
    """A stored trace in the API's shape."""
    return [trace_entry(entry) for entry in trace]


def as_json(value: object) -> object:
    """Shapes as plain JSON values (dicts, lists, strings): for the answers DRF renders and the CSV exports."""
    return msgspec.to_builtins(value)
