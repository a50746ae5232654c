"""The floor of the stack: a bare WSGI app answering a fixed JSON body, served like Switchboard."""

BODY = b'{"ok": true}'


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
