"""The answers of the two routing calls (POST /api/v1/route and /usage): a status, a JSON body, and any headers of
their own (Retry-After).

router.wsgi.RoutingCalls writes one to the WSGI server as it is; the views hand DRF its HttpResponse. Building an
HttpResponse for every call cost the hot path a tenth of a decision's instructions (docs/performance.md).
"""

from dataclasses import dataclass
from http.client import responses

import msgspec
from django.http import HttpResponse
from rest_framework.utils.encoders import JSONEncoder

# msgspec writes the bodies far faster than DRF's renderer; what it does not know goes to DRF's encoder.
JSON = msgspec.json.Encoder(enc_hook=JSONEncoder().default)


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    status: int
    content: bytes
    headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name) if self.headers else None

    def wsgi_status(self) -> str:
        return f"{self.status} {responses.get(self.status, 'Unknown Status Code')}"

    def wsgi_headers(self) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(self.content)))]
        return headers + list(self.headers.items()) if self.headers else headers

    def http_response(self) -> HttpResponse:
        response = HttpResponse(self.content, status=self.status, headers=self.headers, content_type="application/json")
        response["Content-Length"] = str(len(self.content))
        return response


def json_answer(body: dict | msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None) -> JsonAnswer:
    """A body (a dict or one of the Structs the answers are declared as, router.payloads) written as JSON."""
    return JsonAnswer(status, JSON.encode(body), headers)
