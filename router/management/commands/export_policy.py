"""`manage.py export_policy`: print the current policy in the policy file format."""

from django.core.management.base import BaseCommand

from router.policy.document import dump_policy
from router.policy.export import export_policy


class Command(BaseCommand):
    help = "Prints the current policy as a policy file (import_policy reads it back unchanged)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")

    def handle(self, *args, format: str, **options) -> None:
        self.stdout.write(dump_policy(export_policy(), format), ending="")
