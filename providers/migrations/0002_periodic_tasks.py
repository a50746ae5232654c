"""The schedules of the availability refresh (every 10 minutes) and the Bedrock quota sync (daily, 03:00 UTC).

Stored with django-celery-beat, so they can be edited, disabled or added to (one per provider, with
kwargs {"provider_slug": "..."}) in the admin.
"""

from django.db import migrations
from django.utils import timezone

REFRESH = "Refresh provider availability"
SYNC = "Sync Bedrock quotas from AWS Service Quotas"


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")

    every_ten_minutes = IntervalSchedule.objects.filter(every=10, period="minutes").first()
    if every_ten_minutes is None:
        every_ten_minutes = IntervalSchedule.objects.create(every=10, period="minutes")
    daily = CrontabSchedule.objects.filter(minute="0", hour="3", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC").first()
    if daily is None:
        daily = CrontabSchedule.objects.create(minute="0", hour="3", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC")

    PeriodicTask.objects.get_or_create(name=REFRESH, defaults={
        "task": "providers.tasks.refresh_availability",
        "interval": every_ten_minutes,
        # A run still queued when the next one is due is dropped rather than piling up.
        "expire_seconds": 600,
        "description": "Asks every enabled provider which models its account can use (providers.refresh).",
    })
    PeriodicTask.objects.get_or_create(name=SYNC, defaults={
        "task": "providers.tasks.sync_provider_quotas",
        "crontab": daily,
        "expire_seconds": 3600,
        "description": "Reads Bedrock's per-model requests and tokens per minute into quotas with source aws (providers.quota_sync).",
    })
    # Tells a running beat (DatabaseScheduler) to reload its schedule.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedules(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[REFRESH, SYNC]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
