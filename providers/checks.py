"""System checks of the providers (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def secrets_key_of_its_own(app_configs, **kwargs) -> list:
    """Stored provider secrets are encrypted with a key of their own, not one derived from SECRET_KEY."""
    if not settings.SECRETS_ENCRYPTION_KEY_DERIVED:
        return []
    return [Warning(
        "SECRETS_ENCRYPTION_KEY is not set: the key of the stored provider secrets is derived from SECRET_KEY, so "
        "whoever learns SECRET_KEY can also read every stored provider secret.",
        hint="Set SECRETS_ENCRYPTION_KEY to a long random value of its own and keep it apart from SECRET_KEY "
             "(docs/operations.md, Configuration). Stored secrets must be entered again after a change of key.",
        id="providers.W001",
    )]
