"""`manage.py bootstrap --policy FILE`: first-run setup for `make run`; does nothing the second time."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from providers.models import LLMModel, Provider

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Loads a policy file into an empty database and creates an admin user if there is no superuser."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--policy", help="Policy file to import when the database has no providers and no models.")

    def handle(self, *args, policy: str | None, **options) -> None:
        if policy and not Provider.objects.exists() and not LLMModel.objects.exists():
            self.stdout.write(f"Empty database: loading the policy from {policy}")
            call_command("import_policy", policy, stdout=self.stdout, stderr=self.stderr)
        self.ensure_superuser()

    def ensure_superuser(self) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        if users.filter(username=ADMIN_USERNAME).exists():
            self.stdout.write(f"No superuser exists and the user '{ADMIN_USERNAME}' is not one: "
                              "create one with `manage.py createsuperuser`.")
            return
        password = secrets.token_urlsafe(16)
        users.create_superuser(ADMIN_USERNAME, email="", password=password)
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            "\nCreated an admin user for the console (the password is shown this once):\n"
            f"  URL:      /admin/  (with make run: http://127.0.0.1:{port}/admin/)\n"
            f"  user:     {ADMIN_USERNAME}\n"
            f"  password: {password}\n"
            f"Change the password with: .venv/bin/python manage.py changepassword {ADMIN_USERNAME}\n"
        )
