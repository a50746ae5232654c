from django.core.management.base import BaseCommand, CommandError

from router.models import ApiKey
from switchboard.validators import invisible_character
from switchboard.vocabulary import Scope

SCOPES = [choice.value for choice in Scope]


class Command(BaseCommand):
    help = "Create an API key for a service. The key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who will use the key, e.g. the service's name.")
        parser.add_argument("--scopes", required=True, help=f"Comma-separated, any of: {', '.join(SCOPES)}.")

    def handle(self, *args, name: str, scopes: str, **options):
        name = name.strip()
        if not name or len(name) > 50:
            raise CommandError("NAME must be 1 to 50 characters.")
        if problem := invisible_character(name):
            raise CommandError(f"NAME: {problem}.")
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        unknown = sorted(set(wanted) - set(SCOPES))
        if not wanted or unknown:
            raise CommandError(f"Unknown or missing scopes: {', '.join(unknown) or '(none given)'}. Valid scopes: {', '.join(SCOPES)}.")
        api_key, raw_key = ApiKey.objects.create_key(name=name, scopes=sorted(set(wanted), key=SCOPES.index))
        self.stderr.write(f"Created API key '{name}' (prefix {api_key.prefix}) with scopes {', '.join(api_key.scopes)}.")
        self.stderr.write("Store it now: it cannot be shown again. Revoke it in the admin under API keys.")
        self.stdout.write(raw_key)
