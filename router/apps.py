from django.apps import AppConfig


class RouterConfig(AppConfig):
    name = "router"

    def ready(self) -> None:
        from router import signals  # noqa: F401  (connects the policy-version bump)
