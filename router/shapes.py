"""The REST API's one shape per concept (docs/api.md): a time, a model, a decision's trace.

The engine keeps a trace as the dashboard reads and filters it (router.engine: flat entries, epoch
seconds); an answer gives it in the API's shape, converting only what skipped entries carry.
"""

from datetime import UTC, datetime

from router.snapshot import current_snapshot
from switchboard.vocabulary import Verdict


def rfc3339(moment: datetime | float | None) -> str | None:
    """A time as RFC 3339 in UTC with `Z`, from an aware datetime or epoch seconds; None stays None."""
    if moment is None:
        return None
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def model_ref(key: str, provider: str | None) -> dict | None:
    """A model as every answer names it, `{"key", "provider"}`; None when there is no model."""
    return {"key": key, "provider": provider or None} if key else None


def catalog_model_ref(key: str) -> dict | None:
    """The model of the catalog under `key`, named as model_ref does (its provider None if it has left the catalog)."""
    if not key:
        return None
    model = current_snapshot().models.get(key)
    return {"key": key, "provider": model.provider if model else None}


def trace_entry(entry: dict) -> dict:
    """One candidate of a trace as the API gives it: `model` as an object, `cause` the code of why it was passed
    over (None when chosen), `reason` the sentence, `until` and each blocking quota's `frees_at` as times."""
    chosen = entry["verdict"] == Verdict.CHOSEN
    until = entry.get("until")
    quotas = entry.get("quotas") or []
    return {
        "model": {"key": entry["model"], "provider": entry.get("provider")},
        "verdict": entry["verdict"],
        "cause": None if chosen else entry["reason"],
        "reason": entry["reason"] if chosen else entry.get("detail", ""),
        "until": rfc3339(until) if until else None,
        "quotas": [quota | {"frees_at": rfc3339(quota["frees_at"])} for quota in quotas] if quotas else [],
    }


def api_trace(trace: list[dict]) -> list[dict]:
    """A stored trace in the API's shape."""
    return [trace_entry(entry) for entry in trace]
