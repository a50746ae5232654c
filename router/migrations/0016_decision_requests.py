"""A decision counts the requests in its `requests` column: 1, or 0 once its call was reported not sent.

The triggers that keep the ledger's sums (LedgerMinute, LedgerHour) are recreated to sum that column for
decisions instead of counting their rows; decisions already reported not sent are set to 0, which the
triggers take from the sums.
"""

import importlib

from django.db import migrations, models

# (table, the outcome a row is summed under, the requests it counts, which rows count), as in 0010.
SOURCES = (
    ("router_decision", "outcome", "requests", "true"),
    ("router_usageevent", "'reported'", "1", "(decision_id IS NULL OR answered_instead)"),
)
NOT_SENT_DECISIONS = ("SELECT decision_id FROM router_usageevent WHERE status = 'not_sent' AND decision_id IS NOT NULL")


def retention():
    return importlib.import_module("router.migrations.0010_ledger_retention")


def summed(rows: str, outcome: str, requests: str, counted: str, period: str, truncated: str) -> str:
    sums = ", ".join(f"sum({column}) AS {column}" for column in retention().SUMS[1:])
    return (f"SELECT {truncated} AS {period}, {outcome} AS outcome, model_key, provider_slug, sum({requests}) AS entries, {sums}"
            f" FROM {rows} WHERE {counted} GROUP BY 1, 2, 3, 4")


def sqlite_row(row: str, outcome: str, requests: str, counted: str, period: str, truncated: str) -> str:
    outcome = f"{row}.outcome" if outcome == "outcome" else outcome
    requests = f"{row}.{requests}" if requests == "requests" else requests
    for column in ("decision_id", "answered_instead"):
        counted = counted.replace(column, f"{row}.{column}")
    sums = ", ".join(f"{row}.{column} AS {column}" for column in retention().SUMS[1:])
    return (f"SELECT {truncated.replace('created_at', f'{row}.created_at')} AS {period}, {outcome} AS outcome,"
            f" {row}.model_key AS model_key, {row}.provider_slug AS provider_slug, {requests} AS entries, {sums} WHERE {counted}")


def postgresql_triggers() -> list[str]:
    old = retention()
    statements = []
    for table, outcome, requests, counted in SOURCES:
        function = f"{table}_to_ledger_sums"
        added = " ".join(old.upsert(sums, period, summed("new_rows", outcome, requests, counted, period, truncated))
                         for sums, period, truncated, _ in old.PERIODS)
        taken = " ".join(old.subtract(sums, period, summed("old_rows", outcome, requests, counted, period, truncated))
                         for sums, period, truncated, _ in old.PERIODS)
        statements.append(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('INSERT', 'UPDATE') THEN {added} END IF;
                IF TG_OP = 'UPDATE' OR (TG_OP = 'DELETE' AND {old.NOT_PRUNING}) THEN {taken} END IF;
                RETURN NULL;
            END $$""")
        for event, tables in (("INSERT", "NEW TABLE AS new_rows"), ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                              ("DELETE", "OLD TABLE AS old_rows")):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_sums AFTER {event} ON {table}"
                              f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    return statements


def sqlite_triggers() -> list[str]:
    old = retention()
    statements = []
    for table, outcome, requests, counted in SOURCES:
        added = " ".join(old.upsert(sums, period, sqlite_row("NEW", outcome, requests, counted, period, truncated))
                         for sums, period, _, truncated in old.PERIODS)
        taken = " ".join(old.subtract(sums, period, sqlite_row("OLD", outcome, requests, counted, period, truncated))
                         for sums, period, _, truncated in old.PERIODS)
        for event, condition, body in (("INSERT", "", added), ("UPDATE", "", taken + " " + added),
                                       ("DELETE", f" WHEN {old.NOT_PRUNING}", taken)):
            statements.append(f"CREATE TRIGGER {table}_{event.lower()}_ledger_sums AFTER {event} ON {table}{condition}"
                              f" BEGIN {body} END")
    return statements


def sum_requests(apps, schema_editor):
    retention().drop_triggers(apps, schema_editor)
    for statement in postgresql_triggers() if schema_editor.connection.vendor == "postgresql" else sqlite_triggers():
        schema_editor.execute(statement, params=None)


def count_rows(apps, schema_editor):
    retention().drop_triggers(apps, schema_editor)
    retention().create_triggers(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('router', '0015_usage_not_sent'),
    ]

    operations = [
        migrations.AddField(
            model_name='decision',
            name='requests',
            field=models.PositiveSmallIntegerField(db_default=1, default=1, help_text='The requests it counts: 1, or 0 once its call was reported not sent.'),
        ),
        migrations.RunPython(sum_requests, count_rows),
        migrations.RunSQL(f"UPDATE router_decision SET requests = 0 WHERE id IN ({NOT_SENT_DECISIONS})",
                          "UPDATE router_decision SET requests = 1 WHERE requests = 0"),
    ]
