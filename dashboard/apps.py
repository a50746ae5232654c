"""The dashboard app: read-only ops pages (overview, fallback history, what-if); it has no models."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"
