"""The dashboard's pages, mounted at the site root."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("fallbacks/", views.fallbacks, name="fallbacks"),
    path("what-if/", views.what_if, name="what-if"),
    path("tuning/", views.tuning, name="tuning"),
    path("alerts/", views.alerts, name="alerts"),
    path("policy/history/", views.policy_history, name="policy-history"),
    path("policy/versions/<int:number>/", views.policy_version, name="policy-version"),
    path("quotas/<int:quota_id>/", views.quota, name="quota"),
]
