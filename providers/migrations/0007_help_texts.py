import django.core.validators
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0006_model_not_found_at'),
    ]

    operations = [
        migrations.AlterField(
            model_name='historicalllmmodel',
            name='context_window',
            field=models.PositiveIntegerField(help_text='Tokens of input and output together; a request whose estimate exceeds it passes this model over.', validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AlterField(
            model_name='historicalllmmodel',
            name='enabled',
            field=models.BooleanField(default=True, help_text='A disabled model is passed over by every route and tier that lists it.'),
        ),
        migrations.AlterField(
            model_name='historicalquota',
            name='limit',
            field=models.DecimalField(decimal_places=6, help_text='The hard limit: a request whose estimate would pass it is never given these models.', max_digits=20, validators=[django.core.validators.MinValueValidator(Decimal('0.000001'))]),
        ),
        migrations.AlterField(
            model_name='historicalquota',
            name='metric',
            field=models.CharField(choices=[('requests', 'Requests'), ('tokens', 'Tokens'), ('input_tokens', 'Input Tokens'), ('output_tokens', 'Output Tokens'), ('cost_usd', 'Cost Usd')], help_text='What the quota counts, as the provider counts it.', max_length=16),
        ),
        migrations.AlterField(
            model_name='historicalquota',
            name='reset',
            field=models.CharField(choices=[('rolling', 'Rolling'), ('calendar', 'calendar (00:00 UTC, weeks on Monday)')], default='rolling', help_text='rolling: the last window up to now; calendar: the window restarts at 00:00 UTC (weeks on Monday).', max_length=8),
        ),
        migrations.AlterField(
            model_name='historicalquota',
            name='soft_limit_ratio',
            field=models.DecimalField(decimal_places=3, default=Decimal('0.8'), help_text='Above limit × ratio the router falls back to the next model; only categories that may use the headroom, and escalated tasks, go on up to the hard limit.', max_digits=4),
        ),
        migrations.AlterField(
            model_name='llmmodel',
            name='context_window',
            field=models.PositiveIntegerField(help_text='Tokens of input and output together; a request whose estimate exceeds it passes this model over.', validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AlterField(
            model_name='llmmodel',
            name='enabled',
            field=models.BooleanField(default=True, help_text='A disabled model is passed over by every route and tier that lists it.'),
        ),
        migrations.AlterField(
            model_name='quota',
            name='limit',
            field=models.DecimalField(decimal_places=6, help_text='The hard limit: a request whose estimate would pass it is never given these models.', max_digits=20, validators=[django.core.validators.MinValueValidator(Decimal('0.000001'))]),
        ),
        migrations.AlterField(
            model_name='quota',
            name='metric',
            field=models.CharField(choices=[('requests', 'Requests'), ('tokens', 'Tokens'), ('input_tokens', 'Input Tokens'), ('output_tokens', 'Output Tokens'), ('cost_usd', 'Cost Usd')], help_text='What the quota counts, as the provider counts it.', max_length=16),
        ),
        migrations.AlterField(
            model_name='quota',
            name='reset',
            field=models.CharField(choices=[('rolling', 'Rolling'), ('calendar', 'calendar (00:00 UTC, weeks on Monday)')], default='rolling', help_text='rolling: the last window up to now; calendar: the window restarts at 00:00 UTC (weeks on Monday).', max_length=8),
        ),
        migrations.AlterField(
            model_name='quota',
            name='soft_limit_ratio',
            field=models.DecimalField(decimal_places=3, default=Decimal('0.8'), help_text='Above limit × ratio the router falls back to the next model; only categories that may use the headroom, and escalated tasks, go on up to the hard limit.', max_digits=4),
        ),
    ]
