"""The policy version: bumped once per edit, or once per batch of edits (an import, a PUT)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import F
from django.utils import timezone

_state = threading.local()


def bump() -> None:
    from router.models import Policy

    Policy.current()
    Policy.objects.filter(pk=1).update(version=F("version") + 1, updated_at=timezone.now())


def policy_changed() -> None:
    if getattr(_state, "depth", 0):
        _state.changed = True
    else:
        bump()


@contextmanager
def one_version_bump() -> Iterator[None]:
    """Inside this block, any number of policy edits bump the version once, at the end."""
    _state.depth = getattr(_state, "depth", 0) + 1
    if _state.depth == 1:
        _state.changed = False
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.changed:
            _state.changed = False
            bump()
