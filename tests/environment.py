"""Loaded by pytest before Django (pyproject: -p tests.environment), so a bare `pytest` runs like
`make test`: a throwaway secret key, and no HTTPS redirect or secure-only cookies for the test client."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789")
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "0")
