"""The ledger's two entries as plain values: a routing decision and a usage report.

A decision is one `DecisionRecord` from the moment the walk has chosen (router.decisions) to its
ledger row: the counters reserve it, the API and the metrics describe it, the ledger stores it. A
usage report is one `UsageRecord` likewise. Both turn into the JSON row the Redis stream carries
to the database (router.ledger), and back; the ORM models (router.models) only store them.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from router.counting import LEDGER_FIELDS, Usage
from router.engine import Charge
from router.models import Decision, UsageEvent
from router.snapshot import ModelSpec
from switchboard.vocabulary import COUNTED_OUTCOMES, Outcome, SkipReason, UsageStatus

_TOKENS = {name: "bigint" for name in LEDGER_FIELDS if name != "cost_usd"}
# The rows' columns as PostgreSQL reads them from a batch's JSON (router.ledger, jsonb_to_recordset).
DECISION_COLUMNS = {
    "id": "uuid", "created_at": "timestamptz", "caller": "text", "category": "text", "complexity": "text", "tier": "text",
    "outcome": "text", "model_key": "text", "provider_slug": "text", "primary_key": "text", "reason": "text",
    "trace": "jsonb", "policy_version": "bigint", **_TOKENS, "cost_usd": "numeric", "answered_by": "text",
}
USAGE_COLUMNS = {
    "id": "uuid", "created_at": "timestamptz", "caller": "text", "model_key": "text", "provider_slug": "text",
    "decision_id": "uuid", **_TOKENS, "cost_usd": "numeric", "status": "text", "idempotency_key": "text",
    "retry_after": "integer", "ratelimit_headers": "jsonb", "answered_instead": "boolean",
}
# The columns copied as they are between a record and its row or model; the others are converted.
CONVERTED = {"id", "created_at", "decision_id", *LEDGER_FIELDS}
DECISION_PLAIN = tuple(name for name in DECISION_COLUMNS if name not in CONVERTED)
USAGE_PLAIN = tuple(name for name in USAGE_COLUMNS if name not in CONVERTED)

# A charge applied to a Redis counter: (quota hash key, bucket, amount, the key's lifetime).
AppliedCharge = tuple[str, int, int, int]


class DecisionAlreadyReported(Exception):
    """A usage report names a decision whose usage was already reported."""


def _row_usage(usage: Usage) -> dict:
    return {name: getattr(usage, name) for name in LEDGER_FIELDS} | {"cost_usd": str(usage.cost_usd)}


def _usage_of(values: dict) -> Usage:
    return Usage(entries=1, **{name: values[name] for name in LEDGER_FIELDS if name != "cost_usd"}, cost_usd=Decimal(values["cost_usd"]))


def _model_fields(record, plain: tuple[str, ...]) -> dict:
    return {name: getattr(record, name) for name in ("id", "created_at", *plain)} | {name: getattr(record.usage, name) for name in LEDGER_FIELDS}


@dataclass(frozen=True)
class DecisionRecord:
    """One routing answer, with the trace of every candidate considered.

    A counted decision (primary or fallback) is also the ledger's entry for its call: its `usage` is
    the reservation until a usage report replaces it with what the call used (`reported`), or
    releases it when another model answered (`answered_by`). `model`, `charges` and `retry_after`
    serve the answer and the reservation; they are not stored.
    """

    id: uuid.UUID | None
    created_at: datetime
    caller: str
    category: str
    complexity: str
    tier: str
    outcome: str
    model_key: str
    provider_slug: str
    primary_key: str
    reason: str
    trace: list[dict]
    policy_version: int
    usage: Usage = Usage()
    answered_by: str = ""
    reported: bool = False
    model: ModelSpec | None = field(default=None, compare=False)
    charges: tuple[Charge, ...] = field(default=(), compare=False)
    retry_after: int | None = field(default=None, compare=False)

    @property
    def counted(self) -> bool:
        return self.outcome in COUNTED_OUTCOMES

    @property
    def refused(self) -> bool:
        return not self.counted

    @property
    def quota_blocked(self) -> bool:
        """Whether a quota was among the reasons candidates were passed over."""
        return any(entry.get("reason") == SkipReason.QUOTA for entry in self.trace)

    @property
    def failed_fast(self) -> bool:
        return self.outcome == Outcome.FAILED_FAST

    def row(self) -> bytes:
        """The ledger row, as the Redis stream carries it to the database."""
        return orjson.dumps({name: getattr(self, name) for name in DECISION_PLAIN} | _row_usage(self.usage)
                            | {"id": str(self.id), "created_at": self.created_at.isoformat()})

    @classmethod
    def from_row(cls, row: dict) -> "DecisionRecord":
        return cls(**{name: row[name] for name in DECISION_PLAIN}, id=uuid.UUID(row["id"]),
                   created_at=datetime.fromisoformat(row["created_at"]), usage=_usage_of(row))

    def memory(self) -> bytes:
        """What a usage report naming this decision needs of it, as Redis remembers it for an hour."""
        return orjson.dumps([self.outcome, self.model_key, self.created_at.timestamp(), *_row_usage(self.usage).values()])

    @classmethod
    def from_memory(cls, decision_id: uuid.UUID, memory: bytes) -> "DecisionRecord":
        outcome, model_key, created_at, *usage = orjson.loads(memory)
        return cls(id=decision_id, created_at=datetime.fromtimestamp(created_at, tz=UTC), caller="", category="", complexity="",
                   tier="", outcome=outcome, model_key=model_key, provider_slug="", primary_key="", reason="", trace=[],
                   policy_version=0, usage=_usage_of(dict(zip(LEDGER_FIELDS, usage, strict=True))))

    @classmethod
    def from_model(cls, decision: Decision) -> "DecisionRecord":
        values = {name: getattr(decision, name) for name in DECISION_COLUMNS}
        return cls(**{name: values[name] for name in ("id", "created_at", *DECISION_PLAIN)}, usage=_usage_of(values),
                   reported=decision.reported)

    def to_model(self) -> Decision:
        return Decision(**_model_fields(self, DECISION_PLAIN), reported=self.reported)


@dataclass(frozen=True)
class UsageRecord:
    """What one LLM call used, as the service that made it reported it, and what it counts."""

    id: uuid.UUID
    created_at: datetime
    caller: str
    model_key: str
    provider_slug: str
    decision_id: uuid.UUID | None
    usage: Usage
    status: str
    idempotency_key: str | None
    retry_after: int | None
    ratelimit_headers: dict[str, str]
    answered_instead: bool = False  # another model than the decision's answered: this report counts on its own

    def row(self, charges: list[AppliedCharge]) -> bytes:
        """The ledger row, with the Redis charges it applied (taken back if the database finds it a repeat)."""
        decision_id = str(self.decision_id) if self.decision_id else None
        return orjson.dumps({name: getattr(self, name) for name in USAGE_PLAIN} | _row_usage(self.usage)
                            | {"id": str(self.id), "created_at": self.created_at.isoformat(), "decision_id": decision_id,
                               "charges": charges})

    @classmethod
    def from_row(cls, row: dict) -> "UsageRecord":
        decision_id = uuid.UUID(row["decision_id"]) if row["decision_id"] else None
        return cls(**{name: row[name] for name in USAGE_PLAIN}, id=uuid.UUID(row["id"]), created_at=datetime.fromisoformat(row["created_at"]),
                   decision_id=decision_id, usage=_usage_of(row))

    @classmethod
    def from_model(cls, event: UsageEvent) -> "UsageRecord":
        values = {name: getattr(event, name) for name in USAGE_COLUMNS}
        return cls(**{name: values[name] for name in ("id", "created_at", "decision_id", *USAGE_PLAIN)}, usage=_usage_of(values))

    def to_model(self) -> UsageEvent:
        return UsageEvent(**_model_fields(self, ("decision_id", *USAGE_PLAIN)))

    def settles(self) -> dict:
        """The fields of the decision this report names, once reported: what the call used, or, when
        another model answered, nothing (its reservation released) and that model's key; a call not sent
        counts no request either.
        router.ledger's INSERT_USAGE does the same in SQL."""
        settled = Usage() if self.answered_instead else self.usage
        return {name: getattr(settled, name) for name in LEDGER_FIELDS} | {
            "answered_by": self.model_key if self.answered_instead else "", "reported": True,
            "requests": 0 if self.status == UsageStatus.NOT_SENT else 1,
        }
