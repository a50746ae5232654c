"""An alert rule is part of the policy: each change bumps the policy version, as the router's objects do."""

from django.db.models.signals import post_delete, post_save

from alerts.models import AlertRule
from router import versioning


def _policy_changed(sender, raw=False, **kwargs) -> None:
    if not raw:
        versioning.policy_changed()


post_save.connect(_policy_changed, sender=AlertRule, dispatch_uid="policy-version-save-AlertRule")
post_delete.connect(_policy_changed, sender=AlertRule, dispatch_uid="policy-version-delete-AlertRule")
