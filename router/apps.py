from django.apps import AppConfig


class RouterConfig(AppConfig):
    name = "router"

    def ready(self) -> None:
        # Registers the deploy checks, connects the policy-version bump, teaches the OpenAPI schema the routing calls' Structs.
        from router import checks, schema, signals  # noqa: F401
