"""`manage.py import_policy FILE [--plan]`: validate a policy file whole, then apply it in one transaction, or
print what applying it would change."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from router.models import Policy
from router.policy.apply import apply_policy
from router.policy.document import parse_policy
from router.policy.fields import PolicyError
from router.policy.plan import plan_policy


class Command(BaseCommand):
    help = "Validates a policy file (YAML, or JSON for a .json file) and makes the policy equal to it; a bad file changes nothing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The policy file, or - to read standard input.")
        parser.add_argument("--format", choices=["yaml", "json"], help="Default: json for a .json file, else yaml.")
        parser.add_argument("--plan", action="store_true",
                            help="Print what the import would change (added +, removed -, changed ~ with old -> new) and change nothing.")

    def handle(self, *args, file: str, format: str | None, plan: bool = False, **options) -> None:
        fmt = format or ("json" if file.lower().endswith(".json") else "yaml")
        text = sys.stdin.read() if file == "-" else self.read(file)
        label = "<stdin>" if file == "-" else file
        try:
            if plan:
                changes = plan_policy(parse_policy(text, fmt))
                for change in changes:
                    self.stdout.write(str(change))
                version = Policy.current().version
                self.stdout.write(f"{len(changes)} change{'s' if len(changes) != 1 else ''} to policy version {version}; nothing "
                                  "was changed." if changes else f"No changes: policy is already at version {version}")
                return
            changed = apply_policy(parse_policy(text, fmt))
        except PolicyError as exc:
            for problem in exc.problems:
                self.stderr.write(f"{label}: {problem}")
            count = len(exc.problems)
            raise CommandError(f"{label}: {count} problem{'s' if count != 1 else ''} found; nothing was changed.") from exc
        version = Policy.current().version
        if changed:
            self.stdout.write(f"Policy imported: version {version}")
        else:
            self.stdout.write(f"No changes: policy is already at version {version}")

    @staticmethod
    def read(file: str) -> str:
        try:
            return Path(file).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CommandError(f"No such policy file: {file}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read the policy file {file}: {exc}") from exc
