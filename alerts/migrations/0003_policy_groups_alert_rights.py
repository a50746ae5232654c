"""The policy groups get the same rights on alert rules and channels as on the rest of the policy, and viewers see
the alerts and messages the worker stored."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWED = ("alertrule", "alertchannel", "alert", "alertevent", "notification")
EDITED = ("alertrule", "alertchannel")


def give_the_groups_the_alerts(apps, schema_editor):
    alerts = apps.get_app_config("alerts")
    alerts.models_module = True
    create_permissions(alerts, apps=apps, verbosity=0)
    alerts.models_module = None
    Group, Permission = apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    rights = {"policy viewers": [f"view_{name}" for name in VIEWED],
              "policy editors": [f"view_{name}" for name in VIEWED] + [f"{action}_{name}" for action in ("add", "change", "delete")
                                                                       for name in EDITED]}
    for group, codenames in rights.items():
        for found in Group.objects.filter(name=group):
            found.permissions.add(*Permission.objects.filter(content_type__app_label="alerts", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_evaluate_alerts_schedule"),
        ("router", "0002_policy_row_and_groups"),
    ]

    operations = [migrations.RunPython(give_the_groups_the_alerts, migrations.RunPython.noop)]
