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

from router.engine import Charge
from router.models import Decision, UsageEvent
from router.snapshot import ModelSpec
from switchboard.vocabulary import COUNTED_OUTCOMES, Outcome, SkipReason

# The rows' columns as PostgreSQL reads them from a batch's JSON (router.ledger, jsonb_to_recordset).
DECISION_COLUMNS = {
    "id": "uuid", "created_at": "timestamptz", "caller": "text", "category": "text", "complexity": "text", "tier": "text",
    "outcome": "text", "model_key": "text", "provider_slug": "text", "primary_key": "text", "reason": "text",
    "trace": "jsonb", "policy_version": "bigint", "input_tokens": "bigint", "output_tokens": "bigint", "cost_usd": "numeric",
}
USAGE_COLUMNS = {
    "id": "uuid", "created_at": "timestamptz", "caller": "text", "model_key": "text", "provider_slug": "text",
    "decision_id": "uuid", "input_tokens": "bigint", "output_tokens": "bigint", "cost_usd": "numeric", "status": "text",
    "idempotency_key": "text", "retry_after": "integer", "ratelimit_headers": "jsonb",
}
# The columns whose values are JSON as they are; the others are converted (_encoded, _decoded).
CONVERTED = {"id", "created_at", "cost_usd", "decision_id"}
DECISION_PLAIN = tuple(name for name in DECISION_COLUMNS if name not in CONVERTED)
USAGE_PLAIN = tuple(name for name in USAGE_COLUMNS if name not in CONVERTED)

# A charge applied to a Redis counter: (quota hash key, bucket, amount, the key's lifetime).
AppliedCharge = tuple[str, int, int, int]


class DecisionAlreadyReported(Exception):
    """A usage report names a decision whose usage was already reported."""


def _encoded(record) -> dict:
    return {"id": str(record.id), "created_at": record.created_at.isoformat(), "cost_usd": str(record.cost_usd)}


def _decoded(row: dict) -> dict:
    return {"id": uuid.UUID(row["id"]), "created_at": datetime.fromisoformat(row["created_at"]), "cost_usd": Decimal(row["cost_usd"])}


@dataclass(frozen=True)
class DecisionRecord:
    """One routing answer, with the trace of every candidate considered.

    A counted decision (primary or fallback) is also the ledger's entry for its call: it holds the
    estimate it reserved until a usage report replaces it with what the call used (`reported`).
    `model`, `charges` and `retry_after` serve the answer and the reservation; they are not stored.
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
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
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
        return orjson.dumps({name: getattr(self, name) for name in DECISION_PLAIN} | _encoded(self))

    @classmethod
    def from_row(cls, row: dict) -> "DecisionRecord":
        return cls(**{name: row[name] for name in DECISION_PLAIN}, **_decoded(row))

    def memory(self) -> bytes:
        """What a usage report naming this decision needs of it, as Redis remembers it for an hour."""
        return orjson.dumps([self.outcome, self.model_key, self.input_tokens, self.output_tokens, self.created_at.timestamp()])

    @classmethod
    def from_memory(cls, decision_id: uuid.UUID, memory: bytes) -> "DecisionRecord":
        outcome, model_key, input_tokens, output_tokens, created_at = orjson.loads(memory)
        return cls(id=decision_id, created_at=datetime.fromtimestamp(created_at, tz=UTC), caller="", category="", complexity="",
                   tier="", outcome=outcome, model_key=model_key, provider_slug="", primary_key="", reason="", trace=[],
                   policy_version=0, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=Decimal(0))

    @classmethod
    def from_model(cls, decision: Decision) -> "DecisionRecord":
        return cls(**{name: getattr(decision, name) for name in DECISION_COLUMNS}, reported=decision.reported)

    def to_model(self) -> Decision:
        return Decision(**{name: getattr(self, name) for name in DECISION_COLUMNS}, reported=self.reported)


@dataclass(frozen=True)
class UsageRecord:
    """What one LLM call used, as the service that made it reported it."""

    id: uuid.UUID
    created_at: datetime
    caller: str
    model_key: str
    provider_slug: str
    decision_id: uuid.UUID | None
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    status: str
    idempotency_key: str | None
    retry_after: int | None
    ratelimit_headers: dict[str, str]

    def row(self, charges: list[AppliedCharge]) -> bytes:
        """The ledger row, with the Redis charges it applied (taken back if the database finds it a repeat)."""
        decision_id = str(self.decision_id) if self.decision_id else None
        return orjson.dumps({name: getattr(self, name) for name in USAGE_PLAIN} | _encoded(self)
                            | {"decision_id": decision_id, "charges": charges})

    @classmethod
    def from_row(cls, row: dict) -> "UsageRecord":
        decision_id = uuid.UUID(row["decision_id"]) if row["decision_id"] else None
        return cls(**{name: row[name] for name in USAGE_PLAIN}, **_decoded(row), decision_id=decision_id)

    @classmethod
    def from_model(cls, event: UsageEvent) -> "UsageRecord":
        return cls(**{name: getattr(event, name) for name in USAGE_COLUMNS})

    def to_model(self) -> UsageEvent:
        return UsageEvent(**{name: getattr(self, name) for name in USAGE_COLUMNS})
