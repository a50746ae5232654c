from django.contrib.auth.management import create_permissions
from django.db import migrations

POLICY_MODELS = {
    "providers": ["provider", "llmmodel", "quota"],
    "router": ["category", "route", "routemodel", "tier", "tiermodel", "policy"],
}
RECORD_MODELS = {
    "providers": ["availabilitycheck"],
    "router": ["decision", "usageevent", "apikey"],
    "django_celery_beat": ["periodictask", "intervalschedule", "crontabschedule"],
}


def create_policy_and_groups(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Policy = apps.get_model("router", "Policy")
    Policy.objects.get_or_create(pk=1)

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(models_by_app, actions):
        found = []
        for app_label, model_names in models_by_app.items():
            for model_name in model_names:
                codenames = [f"{action}_{model_name}" for action in actions]
                found += Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        return found

    viewers, _ = Group.objects.get_or_create(name="policy viewers")
    viewers.permissions.set(perms(POLICY_MODELS, ["view"]) + perms(RECORD_MODELS, ["view"]))

    editors, _ = Group.objects.get_or_create(name="policy editors")
    editors.permissions.set(
        perms(POLICY_MODELS, ["view", "add", "change", "delete"])
        + perms(RECORD_MODELS, ["view"])
        + perms({"django_celery_beat": ["periodictask", "intervalschedule", "crontabschedule"]}, ["change", "add"])
        + perms({"router": ["apikey"]}, ["add", "change"])
    )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["policy viewers", "policy editors"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("router", "0001_initial"),
        ("providers", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_policy_and_groups, remove_groups)]
