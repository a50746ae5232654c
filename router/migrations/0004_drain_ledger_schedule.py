"""The schedule that writes the ledger from Redis to the database every second (router.tasks.drain_ledger)."""

from django.db import migrations
from django.utils import timezone

DRAIN = "Write the ledger from Redis to the database"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")

    every_second = IntervalSchedule.objects.filter(every=1, period="seconds").first()
    if every_second is None:
        every_second = IntervalSchedule.objects.create(every=1, period="seconds")
    PeriodicTask.objects.get_or_create(name=DRAIN, defaults={
        "task": "router.tasks.drain_ledger",
        "interval": every_second,
        "expire_seconds": 5,
        "description": "Moves accepted decisions and usage reports from the Redis stream into the database (router.ledger).",
    })
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=DRAIN).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("router", "0003_usage_event_uuid"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
