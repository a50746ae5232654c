"""Local fake provider APIs for tests: threaded HTTP servers on 127.0.0.1 speaking each provider's real shapes.

Each fake is a context manager listening on a free port; `url` is its base URL, `requests` what it
was sent. Setting `fail_status` answers every request with that provider's error for the status;
`delay` makes every answer wait that many seconds (longer than a client's timeout: a timeout).
"""

import json
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict | None


class FakeServer(ABC):
    """A threaded HTTP server on 127.0.0.1 that hands every request to `respond`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.fail_status: int | None = None
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self)

            def do_POST(self):
                fake._handle(self)

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    @abstractmethod
    def respond(self, request: Request) -> tuple[int, dict, dict[str, str]]:
        """(status, JSON body, extra headers) for a request."""

    @abstractmethod
    def error(self, status: int, request: Request) -> tuple[int, dict, dict[str, str]]:
        """This provider's error answer for an HTTP status."""

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        request = Request(
            method=handler.command, path=url.path, query=parse_qs(url.query),
            headers={k.lower(): v for k, v in handler.headers.items()}, body=json.loads(raw) if raw else None,
        )
        self.requests.append(request)
        if self.delay:
            time.sleep(self.delay)
        status, body, headers = self.error(self.fail_status, request) if self.fail_status else self.respond(request)
        payload = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (timed out) before the answer


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    host, port = server.server_address[:2]
    server.server_close()
    return f"http://{host}:{port}"


class FakeAnthropic(FakeServer):
    """GET /v1/models (paged: after_id, has_more, first_id, last_id), GET /v1/models/{id}, POST /v1/messages."""

    ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}

    def __init__(self, listed: list[str], api_key: str = "sk-ant-test-key", page_size: int = 2,
                 aliases: dict[str, str] | None = None, usable: set[str] | None = None) -> None:
        super().__init__()
        self.listed = listed
        self.api_key = api_key
        self.page_size = page_size
        self.aliases = aliases or {}
        # Models a one-token request succeeds for; by default the listed ones.
        self.usable = set(listed) if usable is None else usable

    def respond(self, request):
        if self._key(request) != self.api_key:
            return self._error(401, "invalid x-api-key")
        if request.method == "GET" and request.path == "/v1/models":
            return self._models_page(request)
        if request.method == "GET" and request.path.startswith("/v1/models/"):
            model_id = request.path.removeprefix("/v1/models/")
            model_id = self.aliases.get(model_id, model_id)
            if model_id not in self.listed:
                return self._error(404, f"model: {model_id}")
            return 200, self._model(model_id), {}
        if request.method == "POST" and request.path == "/v1/messages":
            model_id = request.body["model"]
            if model_id not in self.usable:
                return self._error(404, f"model: {model_id}")
            return 200, {
                "id": "msg_01", "type": "message", "role": "assistant", "model": model_id,
                "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens", "stop_sequence": None,
                "usage": {"input_tokens": 8, "output_tokens": 1},
            }, {}
        return self._error(404, f"no route {request.path}")

    def error(self, status, request):
        return self._error(status, f"fake error {status} (key {self._key(request)})")

    @staticmethod
    def _key(request: Request) -> str | None:
        # The API takes the key as x-api-key; SDK 2.x sends it as a bearer token.
        return request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ") or None

    def _models_page(self, request):
        after = request.query.get("after_id", [None])[0]
        limit = min(int(request.query.get("limit", ["20"])[0]), self.page_size)
        start = self.listed.index(after) + 1 if after else 0
        page = self.listed[start:start + limit]
        return 200, {
            "data": [self._model(model_id) for model_id in page],
            "has_more": start + limit < len(self.listed),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }, {}

    @staticmethod
    def _model(model_id: str) -> dict:
        return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-02-19T00:00:00Z", "lifecycle": "active"}

    def _error(self, status: int, message: str):
        return status, {"type": "error", "error": {"type": self.ERROR_TYPES.get(status, "api_error"), "message": message}}, {}


class FakeOpenAI(FakeServer):
    """GET /v1/models ({"object": "list", "data": [...]}) and POST /v1/chat/completions."""

    def __init__(self, listed: list[str], api_key: str = "sk-proj-test-key", usable: set[str] | None = None) -> None:
        super().__init__()
        self.listed = listed
        self.api_key = api_key
        self.usable = set(listed) if usable is None else usable

    def respond(self, request):
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(401, request)
        if request.method == "GET" and request.path == "/v1/models":
            data = [{"id": model_id, "object": "model", "created": 1686935002, "owned_by": "openai"} for model_id in self.listed]
            return 200, {"object": "list", "data": data}, {}
        if request.method == "POST" and request.path == "/v1/chat/completions":
            model_id = request.body["model"]
            if model_id not in self.usable:
                return self._error(404, f"The model `{model_id}` does not exist or you do not have access to it.", "model_not_found")
            return 200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
            }, {}
        return self._error(404, f"Unknown request URL: {request.method} {request.path}", "unknown_url")

    def error(self, status, request):
        if status == 401:
            # The real API echoes (part of) the key it was given.
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            return self._error(401, f"Incorrect API key provided: {key}.", "invalid_api_key")
        return self._error(status, f"fake error {status}", None)

    @staticmethod
    def _error(status: int, message: str, code: str | None):
        return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}, {}


def foundation_model(model_id: str, region: str = "us-east-1", inference_types: tuple[str, ...] = ("ON_DEMAND",)) -> dict:
    """A `modelSummaries` entry as ListFoundationModels returns it."""
    provider, name = model_id.split(".", 1)
    return {
        "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
        "modelId": model_id,
        "modelName": name,
        "providerName": provider.capitalize(),
        "inputModalities": ["TEXT"],
        "outputModalities": ["TEXT"],
        "responseStreamingSupported": True,
        "customizationsSupported": [],
        "inferenceTypesSupported": list(inference_types),
        "modelLifecycle": {"status": "ACTIVE"},
    }


def inference_profile(geo: str, model_id: str, regions: tuple[str, ...] = ("us-east-1", "us-east-2", "us-west-2")) -> dict:
    """An `inferenceProfileSummaries` entry as ListInferenceProfiles returns it."""
    profile_id = f"{geo}.{model_id}"
    return {
        "inferenceProfileName": f"{geo.upper()} {model_id}",
        "description": f"Routes requests to {model_id} in {', '.join(regions)}.",
        "createdAt": "2024-08-01T00:00:00Z",
        "updatedAt": "2024-08-01T00:00:00Z",
        "inferenceProfileArn": f"arn:aws:bedrock:{regions[0]}:123456789012:inference-profile/{profile_id}",
        "models": [{"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}"} for region in regions],
        "inferenceProfileId": profile_id,
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
    }


class FakeBedrock(FakeServer):
    """Bedrock's control plane (rest-json): GET /foundation-models and GET /inference-profiles (paged by nextToken);
    and its runtime's POST /model/{id}/converse (AWS_ENDPOINT_URL_BEDROCK_RUNTIME), answered for the ids in `usable`."""

    ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                   429: "ThrottlingException", 500: "InternalServerException"}

    def __init__(self, models: list[dict], profiles: list[dict], page_size: int = 2, usable: set[str] | None = None) -> None:
        super().__init__()
        self.models = models
        self.profiles = profiles
        self.page_size = page_size
        self.usable = usable or set()

    def respond(self, request):
        if request.method == "POST" and request.path.startswith("/model/") and request.path.endswith("/converse"):
            model_id = unquote(request.path.removeprefix("/model/").removesuffix("/converse"))
            if model_id not in self.usable:
                return 400, {"message": "The provided model identifier is invalid."}, {"x-amzn-ErrorType": "ValidationException"}
            return 200, {"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}}, "stopReason": "max_tokens",
                         "usage": {"inputTokens": 8, "outputTokens": 1, "totalTokens": 9}, "metrics": {"latencyMs": 10}}, {}
        if request.path == "/foundation-models":
            return 200, {"modelSummaries": self.models}, {}
        if request.path == "/inference-profiles":
            start = int(request.query.get("nextToken", ["0"])[0])
            body = {"inferenceProfileSummaries": self.profiles[start:start + self.page_size]}
            if start + self.page_size < len(self.profiles):
                body["nextToken"] = str(start + self.page_size)
            return 200, body, {}
        return self.error(404, request)

    def error(self, status, request):
        error_type = self.ERROR_TYPES.get(status, "InternalServerException")
        return status, {"message": f"fake {error_type}"}, {"x-amzn-ErrorType": error_type}


class FakeServiceQuotas(FakeServer):
    """AWS Service Quotas (JSON 1.1): POST / with X-Amz-Target ServiceQuotasV20190624.ListServiceQuotas, paged by NextToken."""

    def __init__(self, quotas: list[dict], page_size: int = 2) -> None:
        super().__init__()
        self.quotas = quotas
        self.page_size = page_size

    def respond(self, request):
        if request.headers.get("x-amz-target") != "ServiceQuotasV20190624.ListServiceQuotas":
            return self.error(400, request)
        start = int(request.body.get("NextToken") or 0)
        body = {"Quotas": self.quotas[start:start + self.page_size]}
        if start + self.page_size < len(self.quotas):
            body["NextToken"] = str(start + self.page_size)
        return 200, body, {"Content-Type": "application/x-amz-json-1.1"}

    def error(self, status, request):
        error_type = {403: "AccessDeniedException", 429: "TooManyRequestsException"}.get(status, "ServiceException")
        return status, {"__type": error_type, "message": f"fake {error_type}"}, {"Content-Type": "application/x-amz-json-1.1"}


def service_quota(code: str, name: str, value: float, region: str = "us-east-1") -> dict:
    """A `Quotas` entry as ListServiceQuotas returns it."""
    return {
        "ServiceCode": "bedrock", "ServiceName": "Amazon Bedrock",
        "QuotaArn": f"arn:aws:servicequotas:{region}:123456789012:bedrock/{code}",
        "QuotaCode": code, "QuotaName": name, "Value": value, "Unit": "None",
        "Adjustable": True, "GlobalQuota": False, "QuotaAppliedAtLevel": "ACCOUNT",
    }


def use_fake_aws(monkeypatch, bedrock_url: str = "", service_quotas_url: str = "", runtime_url: str = "") -> None:
    """Points boto3 at the fakes through the standard AWS_* variables, with throwaway credentials."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if bedrock_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", bedrock_url)
    if service_quotas_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", service_quotas_url)
    if runtime_url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", runtime_url)
