"""Availability refresh: ask each provider what its account can use and record it on the models.

Model rows are written with `QuerySet.update()`, not `save()`: an availability change is an
observation, not a policy edit, so it creates no edit-history row and does not bump the policy
version (the router notices a refresh through the newest `checked_at`). A provider that cannot be
asked leaves its models as they were (or `unknown` if never checked): a flaky list call must not
take every model out of service. A model a real call reported not found (`not_found_at`) comes back only
when a one-token probe answers (providers.adapters.base.Adapter.confirm), never because a listing names it.
Every run is stored as an `AvailabilityCheck`.
"""

import logging
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.adapters import adapter_for
from providers.adapters.base import AVAILABLE, UNKNOWN, AccessReport, ModelAccess, ProviderError, known_secret, redact
from providers.models import AvailabilityCheck, LLMModel, Provider
from switchboard.vocabulary import ProviderKind

logger = logging.getLogger(__name__)

# A claim older than this belongs to a refresh that died without releasing it.
CLAIM_EXPIRES_AFTER = timedelta(minutes=10)


class UnknownProvider(ValueError):
    """No provider with that slug (of the kind asked for); the message lists the valid ones."""


class RefreshInProgress(RuntimeError):
    """Another refresh of this provider is running."""


def select_providers(slug: str | None = None, kind: str | None = None) -> list[Provider]:
    """The enabled providers (of `kind`), or the one named, enabled or not; raises UnknownProvider."""
    providers = Provider.objects.all()
    if kind:
        providers = providers.filter(kind=kind)
    if slug is None:
        return list(providers.filter(enabled=True))
    provider = providers.filter(slug=slug).first()
    if provider is None:
        valid = ", ".join(providers.values_list("slug", flat=True)) or "none"
        what = f"{ProviderKind(kind).label} provider" if kind else "provider"
        raise UnknownProvider(f"No {what} {slug!r}. Valid: {valid}.")
    return [provider]


def refresh_all(slug: str | None = None) -> list[AvailabilityCheck]:
    """Refresh every enabled provider, or only the one named; one provider's failure does not stop the others."""
    checks = []
    for provider in select_providers(slug):
        if not provider.enabled:
            logger.info("availability refresh of %s skipped: provider is disabled", provider.slug)
            continue
        try:
            checks.append(refresh_provider(provider))
        except RefreshInProgress:
            logger.info("availability refresh of %s skipped: another refresh is running", provider.slug)
    return checks


def refresh_provider(provider: Provider) -> AvailabilityCheck:
    """Ask the provider which of its models the account can use, update them, and record the run."""
    claimed_at = _claim(provider)
    try:
        started_at = timezone.now()
        started = time.monotonic()
        models = list(provider.models.all())
        report, error = _ask(provider, models)
        with transaction.atomic():
            changes = _apply(models, report, error, timezone.now())
            check = AvailabilityCheck.record(provider, AvailabilityCheck.Kind.AVAILABILITY, started_at=started_at, started=started,
                                             error=error, changes=changes, models_changed=len(changes))
    finally:
        Provider.objects.filter(pk=provider.pk, refreshing_since=claimed_at).update(refreshing_since=None)
    if error:
        logger.warning("availability refresh of %s failed: %s", provider.slug, error)
    else:
        logger.info("availability refresh of %s: %d of %d models changed", provider.slug, len(changes), len(models))
    return check


def _claim(provider: Provider) -> datetime:
    """Marks the provider as being refreshed, unless a live refresh already has; returns the mark."""
    now = timezone.now()
    free = Q(refreshing_since__isnull=True) | Q(refreshing_since__lt=now - CLAIM_EXPIRES_AFTER)
    if not Provider.objects.filter(free, pk=provider.pk).update(refreshing_since=now):
        raise RefreshInProgress(f"a refresh of {provider.slug} is already running")
    return now


def _ask(provider: Provider, models: list[LLMModel]) -> tuple[AccessReport, str]:
    """The adapter's report and the error text ('' if none); any failure becomes an error, not an exception."""
    try:
        report = adapter_for(provider).check(models)
    except ProviderError as exc:
        return AccessReport(), str(exc)
    except Exception as exc:
        # A bug or an unexpected answer must not stop the other providers' refreshes.
        logger.exception("availability refresh of %s: unexpected error", provider.slug)
        return AccessReport(), redact(f"unexpected error: {type(exc).__name__}: {exc}", known_secret(provider))
    return report, "; ".join(report.errors)


def _apply(models: list[LLMModel], report: AccessReport, error: str, now: datetime) -> list[dict]:
    """Writes what the report says about each model; returns the changes, one entry per changed model."""
    changes = []
    for model in models:
        access = report.models.get(model.model_id)
        if access is None:
            if model.checked_at is not None or model.availability == UNKNOWN:
                continue  # unanswered: keep what the last successful check found
            access = ModelAccess(UNKNOWN, f"not checked yet: {error}")
            fields = {}
        else:
            fields = {"checked_at": now}
        invoke_id = access.invoke_id or model.invoke_id
        fields.update(availability=access.availability, availability_reason=access.reason, invoke_id=invoke_id)
        if access.probed and access.availability == AVAILABLE:
            fields["not_found_at"] = None
        LLMModel.objects.filter(pk=model.pk).update(**fields)
        if access.availability != model.availability or invoke_id != model.invoke_id:
            changes.append({
                "model": model.key,
                "from": model.availability,
                "to": access.availability,
                "invoke_id": invoke_id,
                "reason": access.reason,
            })
    return changes
