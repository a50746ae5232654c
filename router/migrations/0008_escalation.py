"""Escalation and retry limits on routes and tiers: an escalation list, the attempts after which a task walks it, and the most attempts a task may make; the outcomes `escalated` and `attempts_exhausted`."""

import importlib

import django.core.validators
import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models


def ledger_minute_triggers():
    return importlib.import_module("router.migrations.0007_provider_counting")


def drop_triggers_on_sqlite(apps, schema_editor):
    """SQLite remakes a table to change a column, dropping the triggers on it and breaking those that name it."""
    if schema_editor.connection.vendor == "sqlite":
        ledger_minute_triggers().previous().drop_triggers(apps, schema_editor)


def give_the_groups_the_escalation_lists(apps, schema_editor):
    """The policy groups of migration 0002 get the same rights on escalation lists as on the models of routes and tiers."""
    router = apps.get_app_config("router")
    router.models_module = True
    create_permissions(router, apps=apps, verbosity=0)
    router.models_module = None
    Group, Permission = apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    for group, actions in (("policy viewers", ["view"]), ("policy editors", ["view", "add", "change", "delete"])):
        codenames = [f"{action}_{model}" for action in actions for model in ("routeescalation", "tierescalation")]
        for found in Group.objects.filter(name=group):
            found.permissions.add(*Permission.objects.filter(content_type__app_label="router", codename__in=codenames))


def create_triggers_on_sqlite(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        ledger_minute_triggers().create_triggers(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0003_provider_counting'),
        ('router', '0007_provider_counting'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(drop_triggers_on_sqlite, create_triggers_on_sqlite),
        migrations.CreateModel(
            name='HistoricalRouteEscalation',
            fields=[
                ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField(db_index=True, default=0)),
                ('history_id', models.AutoField(primary_key=True, serialize=False)),
                ('history_date', models.DateTimeField(db_index=True)),
                ('history_change_reason', models.CharField(max_length=100, null=True)),
                ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
            ],
            options={
                'verbose_name': 'historical route escalation model',
                'verbose_name_plural': 'historical route escalation models',
                'ordering': ('-history_date', '-history_id'),
                'get_latest_by': ('history_date', 'history_id'),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name='HistoricalTierEscalation',
            fields=[
                ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField(db_index=True, default=0)),
                ('history_id', models.AutoField(primary_key=True, serialize=False)),
                ('history_date', models.DateTimeField(db_index=True)),
                ('history_change_reason', models.CharField(max_length=100, null=True)),
                ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
            ],
            options={
                'verbose_name': 'historical tier escalation model',
                'verbose_name_plural': 'historical tier escalation models',
                'ordering': ('-history_date', '-history_id'),
                'get_latest_by': ('history_date', 'history_id'),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name='RouteEscalation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField(db_index=True, default=0)),
            ],
            options={
                'verbose_name': 'route escalation model',
                'ordering': ['position'],
                'abstract': False,
            },
        ),
        migrations.CreateModel(
            name='TierEscalation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField(db_index=True, default=0)),
            ],
            options={
                'verbose_name': 'tier escalation model',
                'ordering': ['position'],
                'abstract': False,
            },
        ),
        migrations.AddField(
            model_name='historicalroute',
            name='escalate_after',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task after which it walks the escalation list instead (and may use the headroom above soft limits).', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='historicalroute',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task beyond this are refused (429 attempts_exhausted). Empty: no limit.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='historicaltier',
            name='escalate_after',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task after which it walks the escalation list instead (and may use the headroom above soft limits).', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='historicaltier',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task beyond this are refused (429 attempts_exhausted). Empty: no limit.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='route',
            name='escalate_after',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task after which it walks the escalation list instead (and may use the headroom above soft limits).', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='route',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task beyond this are refused (429 attempts_exhausted). Empty: no limit.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='tier',
            name='escalate_after',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task after which it walks the escalation list instead (and may use the headroom above soft limits).', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='tier',
            name='max_attempts',
            field=models.PositiveSmallIntegerField(blank=True, help_text='Attempts of a task beyond this are refused (429 attempts_exhausted). Empty: no limit.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AlterField(
            model_name='decision',
            name='outcome',
            field=models.CharField(choices=[('primary', 'Primary'), ('fallback', 'Fallback'), ('escalated', 'Escalated'), ('failed_fast', 'failed fast'), ('exhausted', 'Exhausted'), ('attempts_exhausted', 'attempts exhausted')], max_length=24),
        ),
        migrations.AlterField(
            model_name='ledgerminute',
            name='outcome',
            field=models.CharField(max_length=24),
        ),
        migrations.AddConstraint(
            model_name='route',
            constraint=models.CheckConstraint(condition=models.Q(('max_attempts__isnull', True), ('escalate_after__isnull', True), ('max_attempts__gte', models.F('escalate_after')), _connector='OR'), name='route_max_attempts_not_below_escalate_after', violation_error_message='max_attempts must be at least escalate_after.'),
        ),
        migrations.AddConstraint(
            model_name='tier',
            constraint=models.CheckConstraint(condition=models.Q(('max_attempts__isnull', True), ('escalate_after__isnull', True), ('max_attempts__gte', models.F('escalate_after')), _connector='OR'), name='tier_max_attempts_not_below_escalate_after', violation_error_message='max_attempts must be at least escalate_after.'),
        ),
        migrations.AddField(
            model_name='historicalrouteescalation',
            name='history_user',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='historicalrouteescalation',
            name='model',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='providers.llmmodel'),
        ),
        migrations.AddField(
            model_name='historicalrouteescalation',
            name='route',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='router.route'),
        ),
        migrations.AddField(
            model_name='historicaltierescalation',
            name='history_user',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='historicaltierescalation',
            name='model',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='providers.llmmodel'),
        ),
        migrations.AddField(
            model_name='historicaltierescalation',
            name='tier',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='router.tier'),
        ),
        migrations.AddField(
            model_name='routeescalation',
            name='model',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='route_escalations', to='providers.llmmodel'),
        ),
        migrations.AddField(
            model_name='routeescalation',
            name='route',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='escalation', to='router.route'),
        ),
        migrations.AddField(
            model_name='tierescalation',
            name='model',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='tier_escalations', to='providers.llmmodel'),
        ),
        migrations.AddField(
            model_name='tierescalation',
            name='tier',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='escalation', to='router.tier'),
        ),
        migrations.AddConstraint(
            model_name='routeescalation',
            constraint=models.UniqueConstraint(fields=('route', 'model'), name='route_escalation_distinct', violation_error_message='A model can appear only once in an escalation list.'),
        ),
        migrations.AddConstraint(
            model_name='tierescalation',
            constraint=models.UniqueConstraint(fields=('tier', 'model'), name='tier_escalation_distinct', violation_error_message='A model can appear only once in an escalation list.'),
        ),
        migrations.RunPython(create_triggers_on_sqlite, drop_triggers_on_sqlite),
        migrations.RunPython(give_the_groups_the_escalation_lists, migrations.RunPython.noop),
    ]
