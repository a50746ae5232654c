"""How much a call counts against a quota, the way the provider counts it.

A quota that mirrors a provider's own limit (a rolling minute, or Bedrock's rolling day of tokens)
counts what the provider's limiter counts:

- Bedrock ("How tokens are counted in Amazon Bedrock"): a call is charged input + max_tokens when
  it starts, and holds input + cache-write tokens + output x the model's burndown rate when it ends;
  cache reads are released.
- Anthropic (rate limits): input tokens per minute count uncached input and cache writes, not cache
  reads; output tokens per minute are charged max_tokens at the start and the actual output at the end.
- OpenAI and compatible APIs (rate limits guide): the limiter counts at admission "the maximum of
  max_tokens and the estimated number of tokens based on the character count" of the request, cached
  prompt tokens included, and refunds nothing: the decision's charge stands, whatever the call used.

Any other quota (a plan cap, a budget) keeps the metric's plain meaning: every input token (cached
or not) and every output token, and cost at the model's prices, cache prices included.

A call's numbers are a `Usage`: what it used, in plain terms, and what it counts against the
provider's limits (`counted_*`). A decision holds its reservation until a report replaces it with
what the call used; the ledger keeps both kinds of numbers, so that its sums count every quota as
the decisions did. `amount` is linear in a Usage's fields, so a report's change is the amount of the
difference between what the call used and what its decision reserved.
"""

import operator
from dataclasses import dataclass, fields
from decimal import Decimal
from functools import reduce

from django.db.models import F, FloatField, Q, Sum

from router.snapshot import COST_SCALE, ModelSpec, QuotaSpec
from router.windows import bucket_at, oldest_counted_bucket
from switchboard.vocabulary import Metric, ProviderKind


@dataclass(frozen=True)
class Usage:
    """One call's numbers (or a sum of calls'): `entries` calls, tokens, cost, and what the provider counts."""

    entries: int = 0
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    counted_tokens: int = 0
    counted_input_tokens: int = 0
    counted_output_tokens: int = 0

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    @classmethod
    def of_sums(cls, sums: dict) -> "Usage":
        """A Usage from a query's sums named as the fields (None for no rows)."""
        return cls(**{name: sums.get(name) or 0 for name in USAGE_FIELDS})


USAGE_FIELDS = tuple(f.name for f in fields(Usage))
LEDGER_FIELDS = tuple(name for name in USAGE_FIELDS if name != "entries")


def provider_counts(quota: QuotaSpec) -> bool:
    """Whether the quota mirrors the provider's own limit, and so counts as the provider counts."""
    if quota.reset != "rolling":
        return False
    return quota.window == "minute" or (quota.provider_kind == ProviderKind.BEDROCK and quota.window == "day")


def amount(quota: QuotaSpec, usage: Usage) -> int:
    """What `usage` counts against the quota, in its unit (micro-dollars for cost quotas)."""
    if quota.metric == Metric.REQUESTS:
        return usage.entries
    if quota.metric == Metric.COST_USD:
        return round(usage.cost_usd * COST_SCALE)
    if provider_counts(quota):
        return {Metric.TOKENS: usage.counted_tokens, Metric.INPUT_TOKENS: usage.counted_input_tokens,
                Metric.OUTPUT_TOKENS: usage.counted_output_tokens}[quota.metric]
    all_input = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_input_tokens
    return {Metric.TOKENS: all_input + usage.output_tokens, Metric.INPUT_TOKENS: all_input,
            Metric.OUTPUT_TOKENS: usage.output_tokens}[quota.metric]


def summed_amount(quota: QuotaSpec) -> Sum:
    """`amount` of a group of the ledger's sums (LedgerMinute, LedgerHour) as the database sums it: `amount` adds up
    some of the columns, each with a weight, so one unit of each column gives the weights. A week of minutes then
    comes back as one number a minute (exact: cost is stored to the micro-dollar, the quota's unit)."""
    weights = {name: amount(quota, Usage(**{name: Decimal(1) if name == "cost_usd" else 1})) for name in USAGE_FIELDS}
    terms = [F(name) * weight if weight != 1 else F(name) for name, weight in weights.items() if weight]
    return Sum(reduce(operator.add, terms), output_field=FloatField())


def covered_by(quota: QuotaSpec) -> Q:
    """The ledger's rows (or sums) that count against the quota: its models', or every model's of its provider."""
    return Q(model_key__in=quota.model_keys) if quota.model_keys else Q(provider_slug=quota.provider)


def reservation(model: ModelSpec, input_tokens: int, max_tokens: int, cache_read: int = 0) -> Usage:
    """What a decision holds until its usage is reported: the estimated input (cached or not, `cache_read`
    of it expected from the provider's prompt cache) and max_tokens (the request's estimated_output_tokens)."""
    uncached = input_tokens - cache_read
    if model.provider_kind in (ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE):
        counted_tokens = max(max_tokens, input_tokens)
    else:
        counted_tokens = input_tokens + max_tokens
    # Anthropic's input limit does not count cache reads; Bedrock's and OpenAI's limiters count the whole input.
    counted_input = uncached if model.provider_kind == ProviderKind.ANTHROPIC else input_tokens
    return Usage(
        entries=1, input_tokens=uncached, output_tokens=max_tokens, cache_read_input_tokens=cache_read,
        cost_usd=Decimal(model.cost_micro_usd(uncached, max_tokens, cache_read)) / COST_SCALE,
        counted_tokens=counted_tokens, counted_input_tokens=counted_input, counted_output_tokens=max_tokens,
    )


def used(model: ModelSpec, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
         reserved: Usage | None = None) -> Usage:
    """What a reported call holds: what it used, and what the provider counts of it. `reserved` is
    its decision's reservation, which an OpenAI limiter keeps."""
    cost = Decimal(model.cost_micro_usd(input_tokens, output_tokens, cache_read, cache_write)) / COST_SCALE
    plain = {"entries": 1, "input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_input_tokens": cache_read,
             "cache_write_input_tokens": cache_write, "cost_usd": cost}
    if model.provider_kind == ProviderKind.BEDROCK:
        output = output_tokens * model.burndown_rate
        return Usage(**plain, counted_tokens=input_tokens + cache_write + output, counted_input_tokens=input_tokens + cache_write,
                     counted_output_tokens=output)
    if model.provider_kind == ProviderKind.ANTHROPIC:
        return Usage(**plain, counted_tokens=input_tokens + cache_write + output_tokens, counted_input_tokens=input_tokens + cache_write,
                     counted_output_tokens=output_tokens)
    if reserved is not None:
        return Usage(**plain, counted_tokens=reserved.counted_tokens, counted_input_tokens=reserved.counted_input_tokens,
                     counted_output_tokens=reserved.counted_output_tokens)
    # Without its decision the request is not known: at least what the call read and wrote.
    prompt = input_tokens + cache_read
    return Usage(**plain, counted_tokens=max(prompt, output_tokens), counted_input_tokens=prompt, counted_output_tokens=output_tokens)


def charges(model: ModelSpec, usage: Usage, at: float, now: float) -> list[tuple[QuotaSpec, int, float]]:
    """What `usage`, counted at `at`, adds to each quota of the model: (quota, amount, at). Nothing is
    added to a quota whose bucket for `at` has left the window by `now`."""
    return [(q, amount(q, usage), at) for q in model.quotas if bucket_at(q, at) >= oldest_counted_bucket(q, now)]


def display_amount(quota: QuotaSpec, value: int) -> float | int:
    """A counter value in the quota's own unit (dollars for cost quotas)."""
    return value / COST_SCALE if quota.metric == Metric.COST_USD else value
