"""`manage.py export_policy [--version N]`: print the current policy, or a stored version of it, in the policy file format."""

from django.core.management.base import BaseCommand, CommandError

from router.policy.document import dump_policy
from router.policy.export import export_policy
from router.policy.versions import UnknownVersion, version_document


class Command(BaseCommand):
    help = "Prints the current policy as a policy file (import_policy reads it back unchanged), or with --version N a stored version."

    def add_base_argument(self, parser, *args, **kwargs) -> None:
        if "--version" not in args:  # here --version N names a policy version, not Django's
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        parser.add_argument("--version", type=int, dest="number", metavar="N", help="A stored policy version instead of the current policy.")

    def handle(self, *args, format: str, number: int | None = None, **options) -> None:
        try:
            document = export_policy() if number is None else version_document(number)
        except UnknownVersion as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(dump_policy(document, format), ending="")
