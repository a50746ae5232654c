import os

from django.core.wsgi import get_wsgi_application

from switchboard.bodies import WholeBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
django_application = get_wsgi_application()

from router.wsgi import RoutingCalls  # noqa: E402 (it needs the apps that get_wsgi_application loads)

application = WholeBodies(RoutingCalls(django_application))
