"""Every change to a policy object bumps the policy version, which tells every process to reload."""

from django.db.models.signals import m2m_changed, post_delete, post_save

from providers.models import LLMModel, Provider, Quota
from router import versioning
from router.models import Category, Policy, Route, RouteEscalation, RouteModel, Tier, TierEscalation, TierModel

POLICY_MODELS = [Provider, LLMModel, Quota, Category, Route, RouteModel, RouteEscalation, Tier, TierModel, TierEscalation, Policy]


def _policy_changed(sender, raw=False, **kwargs) -> None:
    if not raw:
        versioning.policy_changed()


for model in POLICY_MODELS:
    post_save.connect(_policy_changed, sender=model, dispatch_uid=f"policy-version-save-{model.__name__}")
    post_delete.connect(_policy_changed, sender=model, dispatch_uid=f"policy-version-delete-{model.__name__}")
m2m_changed.connect(_policy_changed, sender=Quota.models.through, dispatch_uid="policy-version-quota-models")
