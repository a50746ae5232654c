"""manage.py sync_provider_quotas [PROVIDER]: the Bedrock quota sync, run here and now without a broker."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.management.commands.refresh_availability import report_checks
from providers.quota_sync import sync_all
from providers.refresh import UnknownProvider, select_providers
from switchboard.vocabulary import ProviderKind


class Command(BaseCommand):
    """Prints one line per Bedrock provider; exits non-zero if any provider's sync failed."""

    help = "Read each enabled Bedrock provider's (or the named one's) per-model quotas from AWS Service Quotas."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", nargs="?", help="Bedrock provider slug; default: every enabled Bedrock provider.")

    def handle(self, *args, provider: str | None = None, **options) -> None:
        try:
            providers = select_providers(provider, kind=ProviderKind.BEDROCK)
        except UnknownProvider as exc:
            raise CommandError(str(exc)) from exc
        checks = {check.provider_id: check for check in sync_all(provider)}
        report_checks(self, providers, checks)
