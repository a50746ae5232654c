"""On PostgreSQL, the ledger's decisions and usage reports move into partitioned tables (router.partitions),
so that retention drops whole days instead of deleting rows; SQLite keeps its plain tables.

Each table is renamed, its partitioned successor created with the same columns, partitions made for
every period its rows cover and the days ahead, the rows copied, the old table dropped, and the indexes
and the triggers that keep the sums created again. The triggers come last: the sums already hold the
copied rows. A primary key or a unique index of a partitioned table must hold its partition keys, so:
a decision's is (id, outcome, created_at) and a report's (id, created_at); the idempotency key's index
is no longer unique (router.ledger checks earlier reports); and a report's decision_id is no longer a
foreign key in the database (no unique index on a decision's id alone can exist to reference).

On SQLite, altering the foreign key rebuilds the reports' table, and the triggers that keep the sums
are made again on it.

The copy takes as long as writing the ledger's rows again, with the tables locked: run it in a
maintenance window on a large ledger (docs/operations.md, "Upgrading to the partitioned ledger").
"""

import importlib
from datetime import timedelta

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

from router import partitions

# (table, its partition key, its partitioned levels, its new primary key)
TABLES = (
    ("router_decision", "LIST (outcome)", (partitions.PRIMARY_DECISIONS, partitions.AUDIT_DECISIONS), "id, outcome, created_at"),
    ("router_usageevent", "RANGE (created_at)", (partitions.USAGE,), "id, created_at"),
)
PARTITIONS_SCHEDULE = "Create the ledger's partitions"


def sums_triggers():
    return importlib.import_module("router.migrations.0016_decision_requests")


def retention():
    return importlib.import_module("router.migrations.0010_ledger_retention")


def fetch(schema_editor, sql: str, params=None) -> list[tuple]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def secondary_indexes(schema_editor, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's indexes other than its primary key, unique ones made plain."""
    rows = fetch(schema_editor, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s"
                                " AND indexname <> %s ORDER BY indexname", [table, f"{table}_pkey"])
    return [(name, definition.replace("CREATE UNIQUE INDEX", "CREATE INDEX").replace(" ON ONLY ", " ON ")) for name, definition in rows]


def unique_constraints(schema_editor, table: str) -> list[str]:
    return [name for (name,) in fetch(schema_editor, "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
                                      [table])]


def swap(schema_editor, table: str, create_new, new_primary_key: str) -> None:
    """Replace `table` by a table `create_new(old_name)` makes with the same columns, holding the same rows."""
    old = f"{table}_before_partitions"
    indexes = secondary_indexes(schema_editor, table)
    for constraint in unique_constraints(schema_editor, table):
        schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    schema_editor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    create_new(old)
    schema_editor.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    schema_editor.execute(f"DROP TABLE {old}")
    schema_editor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({new_primary_key})")
    for _, definition in indexes:
        schema_editor.execute(definition)


def create_partitioned(schema_editor, table: str, key: str, levels, old: str) -> None:
    schema_editor.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
                          f" PARTITION BY {key}")
    today = timezone.now().date()
    oldest, newest = fetch(schema_editor, f"SELECT min(created_at)::date, max(created_at)::date FROM {old}")[0]
    first, last = min(oldest or today, today), max(newest or today, today + timedelta(days=partitions.AHEAD_DAYS))
    for series in levels:
        if series is not partitions.USAGE:
            kind = "FOR VALUES IN ('primary')" if series is partitions.PRIMARY_DECISIONS else "DEFAULT"
            schema_editor.execute(f"CREATE TABLE {series.table} PARTITION OF {table} {kind} PARTITION BY RANGE (created_at)")
        schema_editor.execute(f"CREATE TABLE {series.default} PARTITION OF {series.table} DEFAULT")
        for start in partitions.periods(series, first, last):
            schema_editor.execute(partitions.create_partition_sql(series, start))


def create_plain(schema_editor, table: str, old: str) -> None:
    schema_editor.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    retention().drop_triggers(apps, schema_editor)
    for table, key, levels, primary_key in TABLES:
        swap(schema_editor, table, lambda old, table=table, key=key, levels=levels: create_partitioned(schema_editor, table, key, levels, old),
             primary_key)
    for statement in sums_triggers().postgresql_triggers():
        schema_editor.execute(statement, params=None)


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    retention().drop_triggers(apps, schema_editor)
    for table, _, _, _ in TABLES:
        swap(schema_editor, table, lambda old, table=table: create_plain(schema_editor, table, old), "id")
    schema_editor.execute("DROP INDEX router_usageevent_idempotency_key_key")
    schema_editor.execute("ALTER TABLE router_usageevent ADD CONSTRAINT router_usageevent_idempotency_key_key UNIQUE (idempotency_key)")
    for statement in sums_triggers().postgresql_triggers():
        schema_editor.execute(statement, params=None)


def sqlite_triggers_again(apps, schema_editor):
    """SQLite rebuilds a table to alter a column, without its triggers: the sums' triggers are made again."""
    if schema_editor.connection.vendor != "sqlite":
        return
    retention().drop_triggers(apps, schema_editor)
    for statement in sums_triggers().sqlite_triggers():
        schema_editor.execute(statement, params=None)


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")

    daily, _ = CrontabSchedule.objects.get_or_create(minute="7", hour="3", day_of_month="*", month_of_year="*",
                                                     day_of_week="*", timezone="UTC")
    PeriodicTask.objects.get_or_create(name=PARTITIONS_SCHEDULE, defaults={
        "task": "router.tasks.create_ledger_partitions",
        "crontab": daily,
        "expire_seconds": 80_000,
        "description": "Creates the ledger's partitions for the days ahead on PostgreSQL (router.partitions).",
    })
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PARTITIONS_SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("router", "0016_decision_requests"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, sqlite_triggers_again),
        migrations.AlterField(
            model_name="usageevent",
            name="decision",
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="usage_events", to="router.decision"),
        ),
        migrations.RunPython(sqlite_triggers_again, migrations.RunPython.noop),
        migrations.RunPython(partition, unpartition),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
