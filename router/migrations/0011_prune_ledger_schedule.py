"""The schedule that prunes the ledger every hour (router.tasks.prune_ledger)."""

from django.db import migrations
from django.utils import timezone

PRUNE = "Prune the ledger"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")

    hourly, _ = CrontabSchedule.objects.get_or_create(minute="17", hour="*", day_of_month="*", month_of_year="*",
                                                      day_of_week="*", timezone="UTC")
    PeriodicTask.objects.get_or_create(name=PRUNE, defaults={
        "task": "router.tasks.prune_ledger",
        "crontab": hourly,
        "expire_seconds": 3000,
        "description": "Deletes decisions and usage reports older than the retention ages (router.retention).",
    })
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PRUNE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("router", "0010_ledger_retention"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
