"""Quota sync: Bedrock's per-model requests- and tokens-per-minute limits from AWS Service Quotas.

Each model gets the quota for the way it is invoked: the on-demand quota when it is invoked by its
own id, the cross-region quota when through an inference profile (the global cross-region quota
through a `global.` profile). A reported quota is matched to a model by its QuotaCode once an
`aws` quota holds that code, else by its name, which drifts ("On-demand InvokeModel requests per
minute for Anthropic Claude 3.7 Sonnet" became "On-demand model inference requests per minute for
…"): both sides are reduced to lowercase words, so "Claude 3.7 Sonnet" matches
anthropic.claude-3-7-sonnet-20250219-v1:0 and "Claude 3.5 Sonnet V2" does not match v1.

Synced quotas have source `aws`, a rolling minute window, a soft limit ratio of 1 and a pool of
their models. Manual quotas are never overwritten or deleted. A sync runs in one transaction and
is stored as an `AvailabilityCheck` of kind quota_sync whose `models_changed` counts changed quotas.
"""

import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from providers.adapters.base import ProviderError
from providers.adapters.bedrock import BedrockAdapter, ServiceQuota
from providers.models import AvailabilityCheck, LLMModel, Provider, Quota
from providers.refresh import select_providers
from switchboard.vocabulary import Metric, ProviderKind, Reset, Window

logger = logging.getLogger(__name__)

ON_DEMAND = "on-demand"
CROSS_REGION = "cross-region"
GLOBAL_CROSS_REGION = "global cross-region"
METRICS = (Metric.REQUESTS, Metric.TOKENS)

QUOTA_NAME = re.compile(
    r"^(?P<route>on-demand|cross-region|global cross-region) (?:invokemodel|model inference) "
    r"(?P<metric>requests|tokens) per minute for (?P<model>.+)$"
)


@dataclass(frozen=True)
class QuotaKind:
    """What a quota name says: how the model is invoked, what is counted, and which model."""

    route: str
    metric: str
    model_words: tuple[str, ...]


def sync_all(slug: str | None = None) -> list[AvailabilityCheck]:
    """Sync every enabled Bedrock provider, or only the one named; one failure does not stop the others."""
    checks = []
    for provider in select_providers(slug, kind=ProviderKind.BEDROCK):
        if provider.enabled:
            checks.append(sync_provider_quotas(provider))
        else:
            logger.info("quota sync of %s skipped: provider is disabled", provider.slug)
    return checks


def sync_provider_quotas(provider: Provider) -> AvailabilityCheck:
    """Read the provider's Bedrock quotas from AWS Service Quotas into `aws` quotas; record the run."""
    started_at = timezone.now()
    started = time.monotonic()
    reported: list[ServiceQuota] = []
    try:
        reported = BedrockAdapter(provider).service_quotas()
        error = ""
    except ProviderError as exc:
        error = str(exc)
    except Exception as exc:
        logger.exception("quota sync of %s: unexpected error", provider.slug)
        error = f"unexpected error: {type(exc).__name__}: {exc}"
    with transaction.atomic():
        # Serialises concurrent syncs of one provider (two would otherwise create the same quota).
        Provider.objects.select_for_update().get(pk=provider.pk)
        changes = [] if error else _sync(provider, reported)
        check = AvailabilityCheck.record(
            provider, AvailabilityCheck.Kind.QUOTA_SYNC, started_at=started_at, started=started, error=error, changes=changes,
            models_changed=sum(1 for change in changes if change["action"] in {"created", "updated", "deleted"}),
        )
    if error:
        logger.warning("quota sync of %s failed: %s", provider.slug, error)
    else:
        logger.info("quota sync of %s: %d quotas changed", provider.slug, check.models_changed)
    return check


def parse_quota_name(name: str) -> QuotaKind | None:
    """The kind of a per-model, per-minute Bedrock quota, or None for any other quota."""
    match = QUOTA_NAME.match(" ".join(name.lower().split()))
    if match is None:
        return None
    return QuotaKind(match["route"], match["metric"], words(match["model"]))


def words(text: str) -> tuple[str, ...]:
    """Lowercase words, without punctuation, letters and digits apart, a trailing V1 dropped.

    'Anthropic Claude 3.5 Sonnet V2' -> ('anthropic', 'claude', '3', '5', 'sonnet', 'v', '2').
    """
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    text = re.sub(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])", " ", text)
    result = tuple(text.split())
    return result[:-2] if result[-2:] == ("v", "1") else result


def model_route(model: LLMModel) -> tuple[str, str]:
    """(how the model is invoked, its foundation model id)."""
    invoke_id = model.invoke_id or model.model_id
    name_part = model.model_id.split(":", 1)[0]
    # A profile id is "<geo>.<provider>.<model>": one dot more than a foundation model id.
    is_profile = name_part.count(".") >= 2
    foundation_id = model.model_id.split(".", 1)[1] if is_profile else model.model_id
    if invoke_id.startswith("global."):
        return GLOBAL_CROSS_REGION, foundation_id
    if is_profile or invoke_id != model.model_id:
        return CROSS_REGION, foundation_id
    return ON_DEMAND, foundation_id


def model_words(foundation_id: str) -> tuple[str, ...]:
    """'anthropic.claude-3-7-sonnet-20250219-v1:0' -> ('anthropic', 'claude', '3', '7', 'sonnet')."""
    parts = re.split(r"[._-]+", foundation_id.split(":", 1)[0])
    return words(" ".join(part for part in parts if not re.fullmatch(r"\d{8}", part)))


def quota_name(metric: str, model: LLMModel) -> str:
    return f"aws-{metric}-minute-{model.key}"[: Quota._meta.get_field("name").max_length]


def _sync(provider: Provider, reported: list[ServiceQuota]) -> list[dict]:
    by_code = {quota.code: quota for quota in reported}
    kinds = {quota.code: parse_quota_name(quota.name) for quota in reported}
    quotas = list(provider.quotas.prefetch_related("models"))
    changes: list[dict] = []

    # Which reported quota each model draws on, per metric; models sharing one quota share a pool.
    pools: dict[tuple[str, str], list[LLMModel]] = defaultdict(list)
    for model in provider.models.order_by("key"):
        route, foundation_id = model_route(model)
        wanted = {metric: QuotaKind(route, metric, model_words(foundation_id)) for metric in METRICS}
        for metric, kind in wanted.items():
            code = _code_kept(model, kind, quotas, kinds) or _code_by_name(kind, kinds)
            if code is None:
                changes.append({"action": "unmatched", "model": model.key, "reason": f"no {route} {metric}-per-minute quota reported"})
            else:
                pools[code, metric].append(model)

    touched: set[int] = set()
    for (code, metric), models in sorted(pools.items()):
        quota = _apply(provider, by_code[code], metric, models, quotas, touched, changes)
        if quota is not None:
            touched.add(quota.pk)

    for quota in quotas:
        if quota.source != Quota.Source.AWS or quota.pk in touched:
            continue
        if not quota.models.exists():
            # Its models were deleted; with an empty pool it would limit every model of the provider.
            changes.append({"action": "deleted", "quota": quota.name, "code": quota.quota_code, "reason": "its models no longer exist"})
            quota.delete()
        else:
            reason = "still reported, no longer matched to its models" if quota.quota_code in by_code else "no longer reported by AWS"
            changes.append({"action": "left", "quota": quota.name, "code": quota.quota_code, "reason": reason})
    return changes


def _code_kept(model: LLMModel, kind: QuotaKind, quotas: list[Quota], kinds: dict[str, QuotaKind | None]) -> str | None:
    """The code an `aws` quota of this model already holds, if still reported and not renamed into another kind."""
    for quota in quotas:
        if (
            quota.source == Quota.Source.AWS
            and quota.metric == kind.metric
            and quota.quota_code in kinds
            and model in quota.models.all()
        ):
            named = kinds[quota.quota_code]
            if named is None or (named.route, named.metric) == (kind.route, kind.metric):
                return quota.quota_code
    return None


def _code_by_name(kind: QuotaKind, kinds: dict[str, QuotaKind | None]) -> str | None:
    codes = sorted(code for code, named in kinds.items() if named == kind)
    return codes[0] if codes else None


def _apply(
    provider: Provider, reported: ServiceQuota, metric: str, models: list[LLMModel],
    quotas: list[Quota], touched: set[int], changes: list[dict],
) -> Quota | None:
    """Creates or updates the `aws` quota for one reported quota; returns it, or None if skipped."""
    pool = []
    for model in models:
        manual = _manual_quota(model, metric, quotas)
        if manual is None:
            pool.append(model)
        else:
            changes.append({"action": "skipped", "quota": manual.name, "model": model.key, "code": reported.code,
                            "reason": f"manual quota {manual.name} covers this model; AWS reports {reported.value:g}"})
    if not pool:
        return None
    keys = [model.key for model in pool]
    limit = Decimal(str(reported.value))
    if limit <= 0:
        changes.append({"action": "skipped", "code": reported.code, "models": keys, "reason": f"AWS reports {reported.value:g} for {reported.name}"})
        return None

    name = quota_name(metric, pool[0])
    quota = _existing_quota(reported.code, name, pool, quotas)
    if quota is not None and (quota.source == Quota.Source.MANUAL or quota.pk in touched):
        changes.append({"action": "skipped", "code": reported.code, "models": keys, "reason": f"another quota is named {name}"})
        return None
    created = quota is None
    if created:
        quota = Quota(provider=provider, name=name)
        quotas.append(quota)
    old_limit = quota.limit
    values = {
        "quota_code": reported.code, "limit": limit, "metric": metric, "window": Window.MINUTE,
        "reset": Reset.ROLLING, "soft_limit_ratio": Decimal("1"), "source": Quota.Source.AWS,
    }
    fields_changed = created or any(getattr(quota, field) != value for field, value in values.items())
    pool_changed = created or {m.pk for m in quota.models.all()} != {m.pk for m in pool}
    if fields_changed:
        for field, value in values.items():
            setattr(quota, field, value)
        quota._change_reason = "synced from AWS Service Quotas"
        quota.save()
    if pool_changed:
        quota.models.set(pool)
    if fields_changed or pool_changed:
        changes.append({
            "action": "created" if created else "updated", "quota": quota.name, "code": reported.code, "aws_name": reported.name,
            "from": None if created else f"{old_limit.normalize():f}", "to": f"{limit.normalize():f}", "models": keys,
        })
    return quota


def _existing_quota(code: str, name: str, pool: list[LLMModel], quotas: list[Quota]) -> Quota | None:
    """The `aws` quota holding this code for some of these models, else the quota with this name."""
    for quota in quotas:
        if quota.source == Quota.Source.AWS and quota.quota_code == code and set(quota.models.all()) & set(pool):
            return quota
    return next((quota for quota in quotas if quota.name == name), None)


def _manual_quota(model: LLMModel, metric: str, quotas: list[Quota]) -> Quota | None:
    """A manual per-minute quota of this metric whose pool is exactly this model."""
    for quota in quotas:
        if (
            quota.source == Quota.Source.MANUAL
            and quota.metric == metric
            and quota.window == Window.MINUTE
            and [m.pk for m in quota.models.all()] == [model.pk]
        ):
            return quota
    return None
