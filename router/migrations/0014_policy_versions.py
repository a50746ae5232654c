import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models


def let_the_groups_read_the_history(apps, schema_editor):
    """Policy viewers and editors read the policy history (editors roll back through their change permission on the policy)."""
    router = apps.get_app_config("router")
    router.models_module = True
    create_permissions(router, apps=apps, verbosity=0)
    router.models_module = None
    Permission = apps.get_model("auth", "Permission")
    read = Permission.objects.filter(content_type__app_label="router", codename="view_policyversion")
    for group in apps.get_model("auth", "Group").objects.filter(name__in=["policy viewers", "policy editors"]):
        group.permissions.add(*read)


class Migration(migrations.Migration):

    dependencies = [
        ('router', '0013_fallback_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='category',
            name='fallback',
            field=models.CharField(choices=[('allow', 'Allow'), ('never', 'Never')], default='allow', help_text='allow: a passed-over primary falls back along its route. never: the request is refused instead (failed_fast), so critical work is never silently downgraded.', max_length=8),
        ),
        migrations.AlterField(
            model_name='decision',
            name='outcome',
            field=models.CharField(choices=[('primary', 'Primary'), ('fallback', 'Fallback'), ('escalated', 'Escalated'), ('failed_fast', 'failed fast'), ('exhausted', 'Exhausted'), ('attempts_exhausted', 'attempts exhausted'), ('unroutable', 'Unroutable')], max_length=24),
        ),
        migrations.AlterField(
            model_name='historicalcategory',
            name='fallback',
            field=models.CharField(choices=[('allow', 'Allow'), ('never', 'Never')], default='allow', help_text='allow: a passed-over primary falls back along its route. never: the request is refused instead (failed_fast), so critical work is never silently downgraded.', max_length=8),
        ),
        migrations.AlterField(
            model_name='historicalroute',
            name='complexity',
            field=models.CharField(choices=[('low', 'Low'), ('medium', 'Medium'), ('high', 'High'), ('any', 'Any')], default='any', help_text="The requests' complexity this route serves; 'any' serves each complexity without a route of its own.", max_length=8),
        ),
        migrations.AlterField(
            model_name='route',
            name='complexity',
            field=models.CharField(choices=[('low', 'Low'), ('medium', 'Medium'), ('high', 'High'), ('any', 'Any')], default='any', help_text="The requests' complexity this route serves; 'any' serves each complexity without a route of its own.", max_length=8),
        ),
        migrations.CreateModel(
            name='PolicyVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveBigIntegerField(unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('author', models.CharField(help_text='The user, API key or command that made the change.', max_length=200)),
                ('source', models.CharField(choices=[('admin', 'Admin'), ('api', 'PUT /api/v1/policy'), ('command', 'import_policy'), ('rollback', 'Rollback'), ('baseline', 'the policy as it stood when its history began')], max_length=16)),
                ('comment', models.CharField(blank=True, max_length=500)),
                ('changes', models.JSONField(default=list, help_text='What changed, as import_policy --plan lists it.')),
                ('document', models.JSONField(help_text='The whole policy after the change, in the policy file format.')),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-number'],
            },
        ),
        migrations.RunPython(let_the_groups_read_the_history, migrations.RunPython.noop),
    ]
