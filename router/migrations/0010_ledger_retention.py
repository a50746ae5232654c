"""Retention: the ledger summed per hour too (LedgerHour), and pruning that takes nothing from the sums.

The triggers that keep the sums are recreated to keep both periods, and to leave out the deletions
of a transaction that holds a LedgerPruning row (router.retention). Existing minutes are summed
into hours.
"""

import importlib

from django.db import migrations, models

KEY = ("outcome", "model_key", "provider_slug")
SUMS = ("entries", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens", "cost_usd",
        "counted_tokens", "counted_input_tokens", "counted_output_tokens")
# (table, the outcome a row is summed under, which rows count): a usage report that names a decision
# is counted by its decision's row, unless another model answered.
SOURCES = (
    ("router_decision", "outcome", "true"),
    ("router_usageevent", "'reported'", "(decision_id IS NULL OR answered_instead)"),
)
# (sums table, period column, the period of created_at on PostgreSQL, on SQLite)
PERIODS = (
    ("router_ledgerminute", "minute", "date_trunc('minute', created_at)", "strftime('%Y-%m-%d %H:%M:00', created_at)"),
    ("router_ledgerhour", "hour", "date_trunc('hour', created_at, 'UTC')", "strftime('%Y-%m-%d %H:00:00', created_at)"),
)
NOT_PRUNING = "NOT EXISTS (SELECT 1 FROM router_ledgerpruning)"


def upsert(table: str, period: str, select: str) -> str:
    columns = (period, *KEY)
    increments = ", ".join(f"{column} = {table}.{column} + excluded.{column}" for column in SUMS)
    return f"INSERT INTO {table} ({', '.join(columns + SUMS)}) {select} ON CONFLICT ({', '.join(columns)}) DO UPDATE SET {increments};"


def subtract(table: str, period: str, select: str) -> str:
    """Take sums away from the rows that hold them; a row that is not there is left alone."""
    decrements = ", ".join(f"{column} = {table}.{column} - taken.{column}" for column in SUMS)
    matched = " AND ".join(f"{table}.{column} = taken.{column}" for column in (period, *KEY))
    return f"UPDATE {table} SET {decrements} FROM ({select}) AS taken WHERE {matched};"


def summed(rows: str, outcome: str, counted: str, period: str, truncated: str) -> str:
    """A set of rows summed per period, outcome and model, for upsert or subtract."""
    sums = ", ".join(f"sum({column}) AS {column}" for column in SUMS[1:])
    return (f"SELECT {truncated} AS {period}, {outcome} AS outcome, model_key, provider_slug, count(*) AS entries, {sums}"
            f" FROM {rows} WHERE {counted} GROUP BY 1, 2, 3, 4")


def sqlite_row(row: str, outcome: str, counted: str, period: str, truncated: str) -> str:
    """One row as a sum, for upsert or subtract (SQLite's triggers run per row)."""
    outcome = f"{row}.outcome" if outcome == "outcome" else outcome
    for column in ("decision_id", "answered_instead"):
        counted = counted.replace(column, f"{row}.{column}")
    sums = ", ".join(f"{row}.{column} AS {column}" for column in SUMS[1:])
    return (f"SELECT {truncated.replace('created_at', f'{row}.created_at')} AS {period}, {outcome} AS outcome,"
            f" {row}.model_key AS model_key, {row}.provider_slug AS provider_slug, 1 AS entries, {sums} WHERE {counted}")


def postgresql_triggers() -> list[str]:
    statements = []
    for table, outcome, counted in SOURCES:
        function = f"{table}_to_ledger_sums"
        added = " ".join(upsert(sums, period, summed("new_rows", outcome, counted, period, truncated))
                         for sums, period, truncated, _ in PERIODS)
        taken = " ".join(subtract(sums, period, summed("old_rows", outcome, counted, period, truncated))
                         for sums, period, truncated, _ in PERIODS)
        statements.append(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('INSERT', 'UPDATE') THEN {added} END IF;
                IF TG_OP = 'UPDATE' OR (TG_OP = 'DELETE' AND {NOT_PRUNING}) THEN {taken} END IF;
                RETURN NULL;
            END $$""")
        for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                              ("DELETE", "OLD TABLE AS old_rows")):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_sums AFTER {event} ON {table}"
                              f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    return statements


def sqlite_triggers() -> list[str]:
    statements = []
    for table, outcome, counted in SOURCES:
        added = " ".join(upsert(sums, period, sqlite_row("NEW", outcome, counted, period, truncated))
                         for sums, period, _, truncated in PERIODS)
        taken = " ".join(subtract(sums, period, sqlite_row("OLD", outcome, counted, period, truncated))
                         for sums, period, _, truncated in PERIODS)
        for event, condition, body in (("INSERT", "", added), ("UPDATE", "", taken + " " + added),
                                       ("DELETE", f" WHEN {NOT_PRUNING}", taken)):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_sums AFTER {event} ON {table}{condition}"
                              f" BEGIN {body} END")
    return statements


def hours_from_minutes(vendor: str) -> str:
    hour = "date_trunc('hour', minute, 'UTC')" if vendor == "postgresql" else "strftime('%Y-%m-%d %H:00:00', minute)"
    sums = ", ".join(f"sum({column})" for column in SUMS)
    return (f"INSERT INTO router_ledgerhour (hour, {', '.join(KEY + SUMS)})"
            f" SELECT {hour}, {', '.join(KEY)}, {sums} FROM router_ledgerminute GROUP BY 1, 2, 3, 4")


def drop_triggers(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for table, _, _ in SOURCES:
        for event in ("insert", "update", "delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_{event}_ledger_sums{f' ON {table}' if postgresql else ''}")
        if postgresql:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {table}_to_ledger_sums()")


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in postgresql_triggers() if vendor == "postgresql" else sqlite_triggers():
        schema_editor.execute(statement, params=None)


def previous():
    return importlib.import_module("router.migrations.0007_provider_counting")


def keep_both_periods(apps, schema_editor):
    previous().previous().drop_triggers(apps, schema_editor)
    schema_editor.execute(hours_from_minutes(schema_editor.connection.vendor), params=None)
    create_triggers(apps, schema_editor)


def keep_minutes_only(apps, schema_editor):
    drop_triggers(apps, schema_editor)
    previous().create_triggers(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('router', '0009_installation'),
    ]

    operations = [
        migrations.CreateModel(
            name='LedgerPruning',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('started_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name='LedgerHour',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('outcome', models.CharField(max_length=24)),
                ('model_key', models.CharField(max_length=100)),
                ('provider_slug', models.CharField(max_length=64)),
                ('entries', models.BigIntegerField(default=0)),
                ('input_tokens', models.BigIntegerField(default=0)),
                ('output_tokens', models.BigIntegerField(default=0)),
                ('cache_read_input_tokens', models.BigIntegerField(default=0)),
                ('cache_write_input_tokens', models.BigIntegerField(default=0)),
                ('cost_usd', models.DecimalField(decimal_places=6, default=0, max_digits=20)),
                ('counted_tokens', models.BigIntegerField(default=0)),
                ('counted_input_tokens', models.BigIntegerField(default=0)),
                ('counted_output_tokens', models.BigIntegerField(default=0)),
                ('hour', models.DateTimeField()),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('hour', 'outcome', 'model_key', 'provider_slug'), name='ledger_hour_unique')],
            },
        ),
        migrations.RunPython(keep_both_periods, keep_minutes_only),
    ]
