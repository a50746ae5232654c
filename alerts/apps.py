from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        from alerts import health, signals  # noqa: F401  (connects the policy-version bump, adds the channels to /api/v1/health)
        from alerts.policy import SECTION
        from router.policy import sections

        sections.register(SECTION)
