"""Django's session, login and message middleware, stepping aside for the REST API.

Calls under /api/v1/ authenticate with an API key (router.auth): they never read a session, a
logged-in user or a flash message (but for the policy, which an editor may also read and change from
the browser), and running those middleware is a measurable share of a routing
decision (docs/performance.md). The admin's checks accept these subclasses in their place.
CSRF and X-Frame-Options stay Django's own: `check --deploy` looks for those by name, and API
views are exempt from CSRF anyway.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse, JsonResponse

from router.database_outage import DATABASE_UNAVAILABLE
from router.errors import database_unavailable, error_body

API_PREFIX = "/api/v1/"
# The one API endpoint a logged-in user of the admin may call too.
BROWSER_API_PATHS = frozenset({"/api/v1/policy"})


class _BrowserOnly:
    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX) and request.path_info not in BROWSER_API_PATHS:
            return self.get_response(request)
        return super().__call__(request)


class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    pass


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    pass


class DatabaseUnavailableMiddleware:
    """A page or call that needs the database while it cannot be reached answers 503 with Retry-After (JSON under
    /api/, as every API error), not a 500: nothing is wrong with the request or the code."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        error = database_unavailable(exception)
        if request.path_info.startswith("/api/"):
            return JsonResponse(error_body(error), status=error.status_code, headers=error.headers)
        return HttpResponse(f"{error.detail}\n", status=error.status_code, headers=error.headers, content_type="text/plain; charset=utf-8")
