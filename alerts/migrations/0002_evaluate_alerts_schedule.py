"""The schedule that evaluates the alert rules and sends their messages every 30 seconds (alerts.tasks.evaluate_alerts)."""

from django.db import migrations
from django.utils import timezone

EVALUATE = "Evaluate alert rules"


def add_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_30_seconds = IntervalSchedule.objects.filter(every=30, period="seconds").first()
    if every_30_seconds is None:
        every_30_seconds = IntervalSchedule.objects.create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(name=EVALUATE, defaults={"task": "alerts.tasks.evaluate_alerts", "interval": every_30_seconds, "expire_seconds": 25,
        "description": "Evaluates the alert rules and sends their messages (alerts.evaluate, alerts.delivery)."})
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=EVALUATE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_alert_rules_channels_and_events"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
