import os

from django.core.wsgi import get_wsgi_application

from switchboard.bodies import WholeBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")

application = WholeBodies(get_wsgi_application())
