"""The policy's history: every change from any source stored as a numbered version with its diff and the
whole document after it, so that any version can be read, compared or restored."""

from router.models import Policy, PolicyVersion
from router.policy.diff import Change, compare
from router.policy.export import export_policy

# What the history compares the first change with on a new installation.
EMPTY_DOCUMENT = {"version": 1, "providers": [], "models": [], "tiers": [], "categories": [], "routes": []}


class UnknownVersion(LookupError):
    """No stored policy version has this number."""

    def __init__(self, number: int) -> None:
        newest = PolicyVersion.objects.order_by("-number").values_list("number", flat=True).first()
        super().__init__(f"No policy version {number} is stored" + (f"; the newest is {newest}." if newest else "; none is yet."))


def lock_policy() -> Policy:
    """Takes the policy row for the rest of the transaction, so that edits from every source happen one at a time;
    on an installation older than the history, first stores what stands now as where its history begins."""
    Policy.current()
    policy = Policy.objects.select_for_update().get(pk=1)
    if not PolicyVersion.objects.exists() and (document := export_policy()) != EMPTY_DOCUMENT:
        PolicyVersion.objects.create(number=policy.version, author="Switchboard", source=PolicyVersion.Source.BASELINE,
                                     changes=[change.as_dict() for change in compare(EMPTY_DOCUMENT, document)], document=document)
    return policy


def latest_document() -> dict:
    """The policy as the newest stored version holds it."""
    latest = PolicyVersion.objects.order_by("-number").only("document").first()
    return latest.document if latest else EMPTY_DOCUMENT


def record_version(author_name: str, source: str, comment: str = "", user=None) -> PolicyVersion | None:
    """Stores the current policy as a new version if it differs from the newest stored one; None when it does not.
    Called inside the transaction that made the change, after lock_policy and after the version bump."""
    document = export_policy()
    changes = compare(latest_document(), document)
    if not changes:
        return None
    return PolicyVersion.objects.create(
        number=Policy.objects.get(pk=1).version, author=author_name, user=user, source=source, comment=comment[:500],
        changes=[change.as_dict() for change in changes], document=document,
    )


def version_document(number: int) -> dict:
    """The whole policy as it stood at version `number`; raises UnknownVersion."""
    document = PolicyVersion.objects.filter(number=number).values_list("document", flat=True).first()
    if document is None:
        raise UnknownVersion(number)
    return document


def describe(change: dict) -> str:
    """One stored change as import_policy --plan prints it."""
    return str(Change.from_dict(change))
