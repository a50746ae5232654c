"""What applying a policy document would change, found without changing anything: the document is
applied in a transaction that is rolled back, and the policy's export before and after compared."""

from django.db import transaction

from router.policy.apply import COMMAND, Author, apply_policy
from router.policy.diff import Change, compare
from router.policy.export import export_policy


def plan_policy(data: dict, author: Author = COMMAND) -> list[Change]:
    """What apply_policy(data) would change, validated as an import is (PolicyError if invalid); changes nothing."""
    before = export_policy()
    with transaction.atomic():
        apply_policy(data, author)
        after = export_policy()
        transaction.set_rollback(True)
    return compare(before, after)
