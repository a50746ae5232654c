"""`manage.py import_policy FILE [--plan]` or `import_policy --version N [--plan]`: validate a policy file whole
(or a stored version of the policy), then apply it in one transaction as a new version, or print what applying it
would change."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from router.models import Policy, PolicyVersion
from router.policy.apply import COMMAND, Author, apply_policy
from router.policy.document import parse_policy
from router.policy.fields import PolicyError
from router.policy.plan import plan_policy
from router.policy.versions import UnknownVersion, version_document


class Command(BaseCommand):
    help = ("Validates a policy file (YAML, or JSON for a .json file) and makes the policy equal to it; a bad file changes nothing. "
            "With --version N instead of a file, restores the policy as it stood at version N (a rollback), as a new version.")

    def add_base_argument(self, parser, *args, **kwargs) -> None:
        if "--version" not in args:  # here --version N names a policy version, not Django's
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", help="The policy file, or - to read standard input.")
        parser.add_argument("--version", type=int, dest="number", metavar="N",
                            help="Restore the stored policy version N instead of reading a file.")
        parser.add_argument("--format", choices=["yaml", "json"], help="Default: json for a .json file, else yaml.")
        parser.add_argument("--plan", action="store_true",
                            help="Print what the import would change (added +, removed -, changed ~ with old -> new) and change nothing.")
        parser.add_argument("--comment", default="", help="Why: kept with the new version in the policy history.")

    def handle(self, *args, file: str | None, number: int | None, format: str | None, plan: bool = False, comment: str = "",
               **options) -> None:
        if (file is None) == (number is None):
            raise CommandError("Name a policy file, or a stored version with --version N (not both).")
        if number is not None:
            label = f"version {number}"
            source, author = PolicyVersion.Source.ROLLBACK, Author("manage.py import_policy --version")
            comment = comment or f"rollback to version {number}"
            try:
                document = version_document(number)
            except UnknownVersion as exc:
                raise CommandError(str(exc)) from exc
        else:
            fmt = format or ("json" if file.lower().endswith(".json") else "yaml")
            label = "<stdin>" if file == "-" else file
            source, author = PolicyVersion.Source.COMMAND, COMMAND
            document = None
            text = sys.stdin.read() if file == "-" else self.read(file)
        try:
            if document is None:
                document = parse_policy(text, fmt)
            if plan:
                changes = plan_policy(document)
                for change in changes:
                    self.stdout.write(str(change))
                version = Policy.current().version
                self.stdout.write(f"{len(changes)} change{'s' if len(changes) != 1 else ''} to policy version {version}; nothing "
                                  "was changed." if changes else f"No changes: policy is already at version {version}")
                return
            changed = apply_policy(document, author, source, comment)
        except PolicyError as exc:
            for problem in exc.problems:
                self.stderr.write(f"{label}: {problem}")
            count = len(exc.problems)
            raise CommandError(f"{label}: {count} problem{'s' if count != 1 else ''} found; nothing was changed.") from exc
        version = Policy.current().version
        if not changed:
            self.stdout.write(f"No changes: policy is already at version {version}")
        elif number is not None:
            self.stdout.write(f"Policy rolled back to version {number}'s content: version {version}")
        else:
            self.stdout.write(f"Policy imported: version {version}")

    @staticmethod
    def read(file: str) -> str:
        try:
            return Path(file).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CommandError(f"No such policy file: {file}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read the policy file {file}: {exc}") from exc
