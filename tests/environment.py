"""Loaded by pytest before Django (pyproject: -p tests.environment), so a bare `pytest` runs like
`make test`: a throwaway secret key made for this run, and no HTTPS redirect or secure-only cookies
for the test client. Processes the tests start inherit them."""

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "0")
