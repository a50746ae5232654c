
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('router', '0014_policy_versions'),
    ]

    operations = [
        migrations.AlterField(
            model_name='usageevent',
            name='status',
            field=models.CharField(choices=[('ok', 'Ok'), ('rate_limited', 'rate limited'), ('error', 'Error'), ('not_found', 'not found'), ('not_sent', 'not sent')], default='ok', max_length=16),
        ),
    ]
