"""Counting as the providers count: cache tokens and what each call counts against the providers' own
limits, on every ledger row and in the per-minute sums; a report may name the model that answered.

The per-minute sums' triggers are recreated for the new columns, and a usage report that counts on its
own (no decision, or another model answered) is summed under "reported". Rows stored before count as
they did: their counted numbers are their plain ones.
"""

import importlib

from django.db import migrations, models

ROLLUP = "router_ledgerminute"
KEY = ("minute", "outcome", "model_key", "provider_slug")
SUMS = ("entries", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd",
        "counted_tokens", "counted_input_tokens", "counted_output_tokens")
# (table, the outcome a row is summed under, which rows count): a usage report that names a decision
# is counted by its decision's row, unless another model answered.
SOURCES = (
    ("router_decision", "outcome", "true"),
    ("router_usageevent", "'reported'", "(decision_id IS NULL OR answered_instead)"),
)
POSTGRESQL_MINUTE = "date_trunc('minute', created_at)"
SQLITE_MINUTE = "strftime('%Y-%m-%d %H:%M:00', created_at)"


def upsert(select: str) -> str:
    increments = ", ".join(f"{column} = {ROLLUP}.{column} + excluded.{column}" for column in SUMS)
    return f"INSERT INTO {ROLLUP} ({', '.join(KEY + SUMS)}) {select} ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {increments};"


def subtract(select: str) -> str:
    """Take sums away from the rows that hold them; a row that is not there is left alone."""
    decrements = ", ".join(f"{column} = {ROLLUP}.{column} - taken.{column}" for column in SUMS)
    matched = " AND ".join(f"{ROLLUP}.{column} = taken.{column}" for column in KEY)
    return f"UPDATE {ROLLUP} SET {decrements} FROM ({select}) AS taken WHERE {matched};"


def summed(rows: str, outcome: str, counted: str, minute: str = POSTGRESQL_MINUTE) -> str:
    """A set of rows summed per minute, outcome and model, for upsert or subtract."""
    sums = ", ".join(f"sum({column}) AS {column}" for column in SUMS[1:])
    return (f"SELECT {minute} AS minute, {outcome} AS outcome, model_key, provider_slug, count(*) AS entries, {sums}"
            f" FROM {rows} WHERE {counted} GROUP BY 1, 2, 3, 4")


def sqlite_row(row: str, outcome: str, counted: str) -> str:
    """One row as a sum, for upsert or subtract (SQLite's triggers run per row)."""
    outcome = f"{row}.outcome" if outcome == "outcome" else outcome
    for column in ("decision_id", "answered_instead"):
        counted = counted.replace(column, f"{row}.{column}")
    sums = ", ".join(f"{row}.{column} AS {column}" for column in SUMS[1:])
    return (f"SELECT {SQLITE_MINUTE.replace('created_at', f'{row}.created_at')} AS minute, {outcome} AS outcome,"
            f" {row}.model_key AS model_key, {row}.provider_slug AS provider_slug, 1 AS entries, {sums} WHERE {counted}")


def postgresql_triggers() -> list[str]:
    statements = []
    for table, outcome, counted in SOURCES:
        function = f"{table}_to_ledger_minute"
        statements.append(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('INSERT', 'UPDATE') THEN {upsert(summed("new_rows", outcome, counted))} END IF;
                IF TG_OP IN ('UPDATE', 'DELETE') THEN {subtract(summed("old_rows", outcome, counted))} END IF;
                RETURN NULL;
            END $$""")
        for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                              ("DELETE", "OLD TABLE AS old_rows")):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_minute AFTER {event} ON {table}"
                              f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
        statements.append(upsert(summed(table, outcome, counted)))
    return statements


def sqlite_triggers() -> list[str]:
    statements = []
    for table, outcome, counted in SOURCES:
        for event, body in (("INSERT", upsert(sqlite_row("NEW", outcome, counted))),
                            ("UPDATE", subtract(sqlite_row("OLD", outcome, counted)) + upsert(sqlite_row("NEW", outcome, counted))),
                            ("DELETE", subtract(sqlite_row("OLD", outcome, counted)))):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_minute AFTER {event} ON {table} BEGIN {body} END")
        statements.append(upsert(summed(table, outcome, counted, minute=SQLITE_MINUTE)))
    return statements


def previous():
    return importlib.import_module("router.migrations.0005_ledger_minute")


def count_as_before(apps, schema_editor):
    """Rows stored so far count as they were counted: their counted numbers are their plain ones."""
    for table in ("router_decision", "router_usageevent"):
        schema_editor.execute(f"UPDATE {table} SET counted_tokens = input_tokens + output_tokens,"
                              f" counted_input_tokens = input_tokens, counted_output_tokens = output_tokens")


def create_triggers(apps, schema_editor):
    schema_editor.execute(f"DELETE FROM {ROLLUP}")
    vendor = schema_editor.connection.vendor
    for statement in postgresql_triggers() if vendor == "postgresql" else sqlite_triggers():
        schema_editor.execute(statement, params=None)


def recreate_previous_triggers(apps, schema_editor):
    previous().drop_triggers(apps, schema_editor)
    schema_editor.execute(f"DELETE FROM {ROLLUP}")
    previous().create_triggers(apps, schema_editor)



class Migration(migrations.Migration):

    dependencies = [
        ('router', '0006_usage_event_state_indexes'),
    ]

    operations = [
        migrations.RunPython(lambda apps, schema_editor: previous().drop_triggers(apps, schema_editor), recreate_previous_triggers),
        migrations.AddField(
            model_name='decision',
            name='answered_by',
            field=models.CharField(blank=True, help_text='The model that answered, when it was not the one chosen.', max_length=100),
        ),
        migrations.AddField(
            model_name='decision',
            name='cache_read_input_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='decision',
            name='cache_write_input_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='decision',
            name='counted_input_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's input-tokens limiter counts."),
        ),
        migrations.AddField(
            model_name='decision',
            name='counted_output_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's output-tokens limiter counts."),
        ),
        migrations.AddField(
            model_name='decision',
            name='counted_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's tokens-per-minute limiter counts of the call."),
        ),
        migrations.AddField(
            model_name='ledgerminute',
            name='cache_read_input_tokens',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='ledgerminute',
            name='cache_write_input_tokens',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='ledgerminute',
            name='counted_input_tokens',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='ledgerminute',
            name='counted_output_tokens',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='ledgerminute',
            name='counted_tokens',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='answered_instead',
            field=models.BooleanField(default=False, help_text="Another model than the decision's answered: this report counts on its own against its model."),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='cache_read_input_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='cache_write_input_tokens',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='counted_input_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's input-tokens limiter counts."),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='counted_output_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's output-tokens limiter counts."),
        ),
        migrations.AddField(
            model_name='usageevent',
            name='counted_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="What the provider's tokens-per-minute limiter counts of the call."),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='input_tokens',
            field=models.PositiveBigIntegerField(default=0, help_text='Uncached input tokens.'),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='status',
            field=models.CharField(choices=[('ok', 'Ok'), ('rate_limited', 'rate limited'), ('error', 'Error'), ('not_found', 'not found')], default='ok', max_length=16),
        ),
        migrations.AddIndex(
            model_name='decision',
            index=models.Index(condition=models.Q(('outcome__in', ['primary', 'fallback', 'escalated']), ('reported', False)), fields=['created_at'], name='decision_unreported'),
        ),
        migrations.RunPython(count_as_before, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, lambda apps, schema_editor: previous().drop_triggers(apps, schema_editor)),
    ]
