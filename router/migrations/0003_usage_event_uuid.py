"""Usage events get UUID ids, chosen when a report is accepted (it may be written later, router.ledger)."""

import uuid

from django.db import migrations, models


def ids_to_uuids(apps, schema_editor):
    """Existing integer ids become the UUIDs with the same value (1 → 00000000-…-000000000001)."""
    table = "router_usageevent"
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE uuid USING lpad(to_hex(id), 32, '0')::uuid")
        return
    model = apps.get_model("router", "UsageEvent")
    old_field = model._meta.get_field("id")
    new_field = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, serialize=False)
    new_field.set_attributes_from_name("id")
    new_field.model = model
    schema_editor.alter_field(model, old_field, new_field)
    schema_editor.execute(f"UPDATE {table} SET id = printf('%032x', CAST(id AS INTEGER)) WHERE length(id) < 32")


class Migration(migrations.Migration):

    dependencies = [
        ("router", "0002_policy_row_and_groups"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="usageevent",
                    name="id",
                    field=models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False),
                ),
            ],
            database_operations=[migrations.RunPython(ids_to_uuids, migrations.RunPython.noop)],
        ),
    ]
