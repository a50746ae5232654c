"""The ledger summed per minute (router.models.LedgerMinute), kept by triggers and filled from the ledger as it is."""

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models

ROLLUP = "router_ledgerminute"
KEY = ("minute", "outcome", "model_key", "provider_slug")
SUMS = ("entries", "input_tokens", "output_tokens", "cost_usd")
# (table, the outcome a row is summed under, which rows count): a usage report that names a decision
# is counted by its decision's row, which holds the report's tokens.
SOURCES = (
    ("router_decision", "outcome", "true"),
    ("router_usageevent", "'reported'", "decision_id IS NULL"),
)


def upsert(select: str) -> str:
    increments = ", ".join(f"{column} = {ROLLUP}.{column} + excluded.{column}" for column in SUMS)
    return f"INSERT INTO {ROLLUP} ({', '.join(KEY + SUMS)}) {select} ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {increments};"


def subtract(select: str) -> str:
    """Take sums away from the rows that hold them. A row that is not there is left alone: its sums were
    cleared with it (a `manage.py flush` on SQLite deletes the rollup before the ledger)."""
    decrements = ", ".join(f"{column} = {ROLLUP}.{column} - taken.{column}" for column in SUMS)
    matched = " AND ".join(f"{ROLLUP}.{column} = taken.{column}" for column in KEY)
    return f"UPDATE {ROLLUP} SET {decrements} FROM ({select}) AS taken WHERE {matched};"


POSTGRESQL_MINUTE = "date_trunc('minute', created_at)"
SQLITE_MINUTE = "strftime('%Y-%m-%d %H:%M:00', created_at)"


def summed(rows: str, outcome: str, counted: str, minute: str = POSTGRESQL_MINUTE) -> str:
    """A set of rows summed per minute, outcome and model, for upsert or subtract."""
    return (f"SELECT {minute} AS minute, {outcome} AS outcome, model_key, provider_slug, count(*) AS entries,"
            f" sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd"
            f" FROM {rows} WHERE {counted} GROUP BY 1, 2, 3, 4")


def sqlite_row(row: str, outcome: str, counted: str) -> str:
    """One row as a sum, for upsert or subtract (SQLite's triggers run per row)."""
    outcome = f"{row}.outcome" if outcome == "outcome" else outcome
    counted = counted.replace("decision_id", f"{row}.decision_id")
    return (f"SELECT {SQLITE_MINUTE.replace('created_at', f'{row}.created_at')} AS minute, {outcome} AS outcome,"
            f" {row}.model_key AS model_key, {row}.provider_slug AS provider_slug, 1 AS entries,"
            f" {row}.input_tokens AS input_tokens, {row}.output_tokens AS output_tokens, {row}.cost_usd AS cost_usd WHERE {counted}")


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


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        raise ImproperlyConfigured(f"Switchboard runs on PostgreSQL or SQLite, not {vendor}: point DATABASE_URL at one of them.")
    for statement in postgresql_triggers() if vendor == "postgresql" else sqlite_triggers():
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    for table, _, _ in SOURCES:
        for event in ("insert", "update", "delete"):
            on_table = f" ON {table}" if schema_editor.connection.vendor == "postgresql" else ""
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_{event}_ledger_minute{on_table}")
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {table}_to_ledger_minute()")


class Migration(migrations.Migration):

    dependencies = [
        ("router", "0004_drain_ledger_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="LedgerMinute",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("minute", models.DateTimeField()),
                ("outcome", models.CharField(max_length=16)),
                ("model_key", models.CharField(max_length=100)),
                ("provider_slug", models.CharField(max_length=64)),
                ("entries", models.BigIntegerField(default=0)),
                ("input_tokens", models.BigIntegerField(default=0)),
                ("output_tokens", models.BigIntegerField(default=0)),
                ("cost_usd", models.DecimalField(decimal_places=6, default=0, max_digits=20)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("minute", "outcome", "model_key", "provider_slug"), name="ledger_minute_unique")],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
