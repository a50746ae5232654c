from django.urls import path, re_path

from router import api, errors, ops

urlpatterns = [
    path("route", api.RouteView.as_view(), name="api-route"),
    path("usage", api.UsageView.as_view(), name="api-usage"),
    path("quotas", api.QuotasView.as_view(), name="api-quotas"),
    path("quotas/tuning", api.TuningView.as_view(), name="api-quotas-tuning"),
    path("models", api.ModelsView.as_view(), name="api-models"),
    path("models/<str:key>/clear-not-found", api.ClearNotFoundView.as_view(), name="api-model-clear-not-found"),
    path("decisions", api.DecisionsView.as_view(), name="api-decisions"),
    path("policy", api.PolicyView.as_view(), name="api-policy"),
    path("health", ops.HealthView.as_view(), name="api-health"),
    re_path(r"^", errors.not_found),
]
