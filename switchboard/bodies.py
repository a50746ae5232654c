"""Chunked request bodies, read whole before Django sees the request.

Django reads CONTENT_LENGTH bytes of a body, and a `Transfer-Encoding: chunked` request has no
Content-Length: it would be taken as empty. A server that decodes chunked bodies itself (gunicorn says
so with `wsgi.input_terminated`) hands this wrapper the decoded stream, which it reads up to the
largest body the app takes and passes on with its length; a larger one is 413. A server that does not
(Django's development server) gets 411: send a Content-Length. Requests with a Content-Length pass
straight through.
"""

import io
from collections.abc import Callable, Iterable

import orjson
from django.conf import settings

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def _error(start_response: Callable, status: str, code: str, detail: str) -> list[bytes]:
    body = orjson.dumps({"error": code, "detail": detail})
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")])
    return [body]


class WholeBodies:
    """WSGI middleware: a chunked body becomes a body with a Content-Length, or a JSON 411 or 413."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "HTTP_TRANSFER_ENCODING" in environ:
            if "chunked" not in environ["HTTP_TRANSFER_ENCODING"].lower():
                return _error(start_response, "501 Not Implemented", "unsupported_transfer_encoding",
                              "Only the chunked transfer encoding is understood.")
            if not environ.get("wsgi.input_terminated"):
                return _error(start_response, "411 Length Required", "length_required",
                              "This server cannot read a chunked body: send the body with a Content-Length.")
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                return _error(start_response, "413 Request Entity Too Large", "payload_too_large",
                              f"The request body is larger than {limit} bytes.")
            del environ["HTTP_TRANSFER_ENCODING"]
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)
