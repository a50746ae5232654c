from django.apps import AppConfig


class RouterConfig(AppConfig):
    name = "router"

    def ready(self) -> None:
        from router import checks, signals  # noqa: F401  (registers the deploy checks, connects the policy-version bump)
