"""manage.py refresh_availability [PROVIDER]: the availability refresh, run here and now without a broker."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.models import AvailabilityCheck, Provider
from providers.refresh import UnknownProvider, refresh_all, select_providers


class Command(BaseCommand):
    """Prints one line per provider; exits non-zero if any provider's refresh failed."""

    help = "Ask each enabled provider (or the one named) which models its account can use, and record it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("provider", nargs="?", help="Provider slug; default: every enabled provider.")

    def handle(self, *args, provider: str | None = None, **options) -> None:
        try:
            providers = select_providers(provider)
        except UnknownProvider as exc:
            raise CommandError(str(exc)) from exc
        checks = {check.provider_id: check for check in refresh_all(provider)}
        report_checks(self, providers, checks)


def report_checks(command: BaseCommand, providers: list[Provider], checks: dict[int, AvailabilityCheck]) -> None:
    """One line per provider: its changes or its error; raises CommandError if any run failed."""
    failed = []
    for provider in providers:
        check = checks.get(provider.pk)
        if check is None:
            why = "provider is disabled" if not provider.enabled else "another run for it is in progress"
            command.stdout.write(f"{provider.slug}: skipped, {why}")
        elif check.ok:
            details = "; ".join(_describe(change) for change in check.changes)
            command.stdout.write(f"{provider.slug}: ok, {check.models_changed} changed" + (f": {details}" if details else ""))
        else:
            failed.append(provider.slug)
            command.stdout.write(f"{provider.slug}: error: {check.error}")
    if failed:
        raise CommandError(f"Failed: {', '.join(failed)}.")


def _describe(change: dict) -> str:
    if "action" in change:  # a quota sync change
        subject = change.get("quota") or change.get("model") or ", ".join(change.get("models", []))
        if change.get("to"):
            detail = f"{change['from']} -> {change['to']}" if change.get("from") else change["to"]
        else:
            detail = change.get("reason", "")
        return f"{change['action']} {subject} ({detail})"
    return f"{change['model']} {change['from']} -> {change['to']} ({change['reason']})"
