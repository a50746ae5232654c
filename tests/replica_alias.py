"""The "replica" database alias DATABASE_REPLICA_URL adds, added by a test module beside the test database."""

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections


@contextmanager
def replica_alias(**overrides: object) -> Iterator[None]:
    """A "replica" alias reading the test database itself (Django's test mirror), or the server `overrides` name.

    Added after the test database exists, so that it names the test database, as a mirror does; the tests that read
    through it commit (transaction=True): the replica is a connection of its own and sees only what is committed.
    """
    replica = copy.deepcopy(connections["default"].settings_dict) | overrides
    replica["TEST"] = replica["TEST"] | {"MIRROR": "default"}
    settings.DATABASES["replica"] = replica
    try:
        yield
    finally:
        connections["replica"].close()
        del connections["replica"]
        del settings.DATABASES["replica"]


def empty_for_serialized_rollback() -> None:
    """Empty the test database's tables, as a serialized rollback expects to find them before it restores the database
    as migrated: a transactional test without one, run before, leaves what post_migrate recreates (content types,
    permissions) under new ids, which the restored rows would collide with."""
    call_command("flush", interactive=False, inhibit_post_migrate=True, verbosity=0)


# The marks of a module whose tests read through the replica alias: PostgreSQL only, committed rows, both aliases.
REPLICA_TESTS = [
    pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="DATABASE_REPLICA_URL names a PostgreSQL replica"),
    pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "replica"]),
]


@contextmanager
def replica_for_the_module(django_db_blocker, **overrides: object) -> Iterator[None]:
    """The replica alias (replica_alias) for a module's tests, the tables emptied first for their serialized rollbacks."""
    with django_db_blocker.unblock():
        empty_for_serialized_rollback()
        with replica_alias(**overrides):
            yield
