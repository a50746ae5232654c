"""How much a call counts against a quota: at the decision (the estimate it reserves), when its usage
is reported (what replaces the estimate), and when the ledger is summed. Pure functions of the
policy snapshot and the numbers; the engine and both counter backends use them.

Counters are integers in the quota's unit; costs are counted in micro-dollars (COST_SCALE).
"""

from decimal import Decimal

from router.snapshot import COST_SCALE, ModelSpec, QuotaSpec
from router.windows import bucket_at, oldest_counted_bucket
from switchboard.vocabulary import Metric


def amount_for(quota: QuotaSpec, model: ModelSpec | None, input_tokens: int, output_tokens: int, requests: int = 1) -> int:
    """What a call of these tokens counts against the quota (`model` prices a cost quota)."""
    if quota.metric == Metric.REQUESTS:
        return requests
    if quota.metric == Metric.TOKENS:
        return input_tokens + output_tokens
    if quota.metric == Metric.INPUT_TOKENS:
        return input_tokens
    if quota.metric == Metric.OUTPUT_TOKENS:
        return output_tokens
    return model.cost_micro_usd(input_tokens, output_tokens)


def ledger_amount(quota: QuotaSpec, requests: int | None, input_tokens: int | None, output_tokens: int | None,
                  cost_usd: Decimal | None) -> int:
    """What ledger rows (or their sums) count toward the quota, in its unit."""
    if quota.metric == Metric.COST_USD:
        return round((cost_usd or 0) * COST_SCALE)
    return amount_for(quota, None, input_tokens or 0, output_tokens or 0, requests=requests or 0)


def settlement(model: ModelSpec, *, input_tokens: int, output_tokens: int, now: float, decision_at: float | None = None,
               decision_input_tokens: int = 0, decision_output_tokens: int = 0) -> list[tuple[QuotaSpec, int, float]]:
    """What a usage report adds to each quota of its model, and when: (quota, amount, counted at).

    A report naming its decision (`decision_at` given) replaces the estimate counted at decision time
    with the actual usage, in the decision's bucket, and not at all once that bucket has left the
    window. A report without a decision counts as reported, now.
    """
    if decision_at is None:
        return [(q, amount_for(q, model, input_tokens, output_tokens), now) for q in model.quotas]
    return [
        (q, amount_for(q, model, input_tokens, output_tokens, requests=0)
         - amount_for(q, model, decision_input_tokens, decision_output_tokens, requests=0), decision_at)
        for q in model.quotas if bucket_at(q, decision_at) >= oldest_counted_bucket(q, now)
    ]


def display_amount(quota: QuotaSpec, value: int) -> float | int:
    """A counter value in the quota's own unit (dollars for cost quotas)."""
    return value / COST_SCALE if quota.metric == Metric.COST_USD else value
