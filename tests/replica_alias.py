"""The "replica" database alias DATABASE_REPLICA_URL adds, added by a test module beside the test database."""

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
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
