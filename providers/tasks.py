"""Celery tasks: the availability refresh and the quota sync, run on the schedules stored by django-celery-beat.

One refresh task covers every enabled provider, each refreshed on its own: a failing provider is
recorded as a failed check and does not stop the others. A schedule for a single provider is a
periodic task with kwargs {"provider_slug": "<slug>"}.
"""

from celery import shared_task

from providers import quota_sync, refresh


@shared_task
def refresh_availability(provider_slug: str | None = None) -> list[int]:
    """Refresh every enabled provider, or only the one named; returns the ids of the checks stored."""
    return [check.pk for check in refresh.refresh_all(provider_slug)]


@shared_task
def sync_provider_quotas(provider_slug: str | None = None) -> list[int]:
    """Sync Bedrock quotas from AWS Service Quotas for every enabled Bedrock provider, or the one named."""
    return [check.pk for check in quota_sync.sync_all(provider_slug)]
