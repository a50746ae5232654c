"""What the three provider stand-ins share: the clock, token counting, limiters, prompt cache, call record and HTTP server.

Token counting (all stand-ins): a piece of text counts ``ceil(len(text) / 4)`` tokens, OpenAI's rule of thumb
("one token is about four characters of English"). Markers (below) are removed before counting. Each provider
module says which pieces of a request it counts.

Per-request markers, written anywhere in the text of the LAST user message:

- ``[[output_tokens=600]]``: the call produces 600 output tokens (still capped at the request's max_tokens);
- ``[[input_tokens=1500]]``: the call reports (and, where the provider tokenizes exactly, counts) 1,500 input tokens
  in total, whatever the text's length;
- ``[[tool_call=N]]``: when the request offers tools, the answer (after its text) asks to call the first of them with
  the input ``{"call": N}``, and stops for it.

Limiters: ``TokenBucket`` (capacity = the per-minute limit, refilled continuously at limit/60 per second; Anthropic
documents this algorithm, and OpenAI's reset headers describe the same behaviour) and ``RollingWindow`` (the sum of
the charges made in the last 60 seconds, or 86,400 for a daily quota; used for Bedrock's per-minute quotas, whose
algorithm AWS does not publish). Time comes from an injectable clock: pass ``FakeClock()`` and ``advance`` it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

Clock = Callable[[], float]

MARKER = re.compile(r"\[\[\s*(output_tokens|input_tokens|tool_call)\s*=\s*(\d+)\s*\]\]")
MINUTE = 60.0
DAY = 86_400.0
CACHE_TTL = {"5m": 300.0, "1h": 3600.0}


class FakeClock:
    """A clock for tests: starts at 2026-01-01T00:00:00Z and moves only when told."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def strip_markers(text: str) -> str:
    return MARKER.sub("", text)


def count_tokens(text: str) -> int:
    """The stand-ins' tokenizer: ceil(characters / 4), markers removed."""
    return math.ceil(len(strip_markers(text)) / 4)


def read_markers(text: str) -> dict[str, int]:
    """The ``[[name=N]]`` markers in a text; the last one of a name wins."""
    return {name: int(value) for name, value in MARKER.findall(text)}


def tool_call(tool_names: list[str], markers: dict[str, int]) -> tuple[str, dict[str, int]] | None:
    """(name, input) of the tool call the ``[[tool_call=N]]`` marker asks for, if the request offers a tool."""
    if "tool_call" not in markers or not tool_names:
        return None
    return tool_names[0], {"call": markers["tool_call"]}


def filler_text(tokens: int) -> str:
    """Text that the stand-ins' tokenizer counts as exactly `tokens` tokens."""
    return "word" * tokens


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(math.ceil(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class TokenBucket:
    """A bucket of `limit` units refilled continuously at limit/60 per second; it may be overdrawn down to -limit."""

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self._level = float(limit)
        self._at = now

    def level(self, now: float) -> float:
        if now > self._at:
            self._level = min(float(self.limit), self._level + (now - self._at) * self.limit / MINUTE)
            self._at = now
        return self._level

    def remaining(self, now: float) -> int:
        return max(0, math.floor(self.level(now)))

    def take(self, amount: float, now: float) -> None:
        self._level = max(-float(self.limit), self.level(now) - amount)

    def give(self, amount: float, now: float) -> None:
        self._level = min(float(self.limit), self.level(now) + amount)

    def wait_for(self, amount: float, now: float) -> float | None:
        """Seconds until `amount` can be taken; None if it never can (more than the whole bucket)."""
        if amount > self.limit:
            return None
        return max(0.0, (amount - self.level(now)) * MINUTE / self.limit)

    def until_full(self, now: float) -> float:
        return (self.limit - self.level(now)) * MINUTE / self.limit


@dataclass
class Charge:
    """One call's charge in a rolling window; its amount can be corrected while it is still in the window."""

    at: float
    amount: int


class RollingWindow:
    """The sum of the charges made in the last `seconds` seconds must stay within `limit`."""

    def __init__(self, limit: int, seconds: float = MINUTE) -> None:
        self.limit = limit
        self.seconds = seconds
        self._charges: deque[Charge] = deque()

    def _prune(self, now: float) -> None:
        while self._charges and self._charges[0].at + self.seconds <= now:
            self._charges.popleft()

    def used(self, now: float) -> int:
        self._prune(now)
        return sum(charge.amount for charge in self._charges)

    def remaining(self, now: float) -> int:
        return max(0, self.limit - self.used(now))

    def add(self, amount: int, now: float) -> Charge:
        charge = Charge(now, amount)
        self._charges.append(charge)
        return charge

    def wait_for(self, amount: int, now: float) -> float | None:
        """Seconds until `amount` fits; None if it never can."""
        if amount > self.limit:
            return None
        used = self.used(now)
        if used + amount <= self.limit:
            return 0.0
        for charge in self._charges:
            used -= charge.amount
            if used + amount <= self.limit:
                return max(0.0, charge.at + self.seconds - now)
        return 0.0

    def until_empty(self, now: float) -> float:
        self._prune(now)
        return max(0.0, self._charges[-1].at + self.seconds - now) if self._charges else 0.0


@dataclass(frozen=True)
class Breakpoint:
    """A cacheable prefix of a prompt: its identity, its size in tokens and how long the cache keeps it."""

    key: str
    tokens: int
    ttl: float = CACHE_TTL["5m"]


@dataclass
class CachePlan:
    """What a call reads from and writes to the prompt cache, applied only if the call is admitted."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0
    store: list[Breakpoint] = field(default_factory=list)

    @property
    def write(self) -> int:
        return self.write_5m + self.write_1h


class PromptCache:
    """Breakpoint prompt caching (Anthropic's cache_control, Bedrock's cachePoint).

    The longest breakpoint prefix seen before (within its TTL, refreshed by every hit) is read from the cache; the
    tokens from there up to the last breakpoint are written. Prefixes shorter than the model's minimum are not cached.
    """

    def __init__(self) -> None:
        self._expires: dict[str, float] = {}

    def plan(self, scope: str, breakpoints: list[Breakpoint], now: float, min_tokens: int) -> CachePlan:
        eligible = sorted((b for b in breakpoints if b.tokens >= min_tokens), key=lambda b: b.tokens)
        plan = CachePlan()
        for breakpoint in reversed(eligible):
            if self._expires.get(scope + breakpoint.key, 0.0) > now:
                plan.read = breakpoint.tokens
                plan.store.append(breakpoint)
                break
        covered = plan.read
        for breakpoint in eligible:
            if breakpoint.tokens > covered:
                if breakpoint.ttl >= CACHE_TTL["1h"]:
                    plan.write_1h += breakpoint.tokens - covered
                else:
                    plan.write_5m += breakpoint.tokens - covered
                covered = breakpoint.tokens
                plan.store.append(breakpoint)
        return plan

    def commit(self, scope: str, plan: CachePlan, now: float) -> None:
        for breakpoint in plan.store:
            key = scope + breakpoint.key
            self._expires[key] = max(self._expires.get(key, 0.0), now + breakpoint.ttl)
        if len(self._expires) > 10_000:
            self._expires = {key: expires for key, expires in self._expires.items() if expires > now}


class PrefixCache:
    """OpenAI-style automatic caching: the longest common character prefix with a recent prompt of the same model."""

    def __init__(self, size: int = 64, ttl: float = CACHE_TTL["5m"]) -> None:
        self.size = size
        self.ttl = ttl
        self._prompts: dict[str, OrderedDict[str, float]] = {}

    def longest_prefix(self, scope: str, text: str, now: float) -> int:
        best = 0
        for prompt, expires in self._prompts.get(scope, {}).items():
            if expires > now:
                n = min(len(prompt), len(text))
                i = 0
                while i < n and prompt[i] == text[i]:
                    i += 1
                best = max(best, i)
        return best

    def store(self, scope: str, text: str, now: float) -> None:
        prompts = self._prompts.setdefault(scope, OrderedDict())
        prompts.pop(text, None)
        prompts[text] = now + self.ttl
        while len(prompts) > self.size:
            prompts.popitem(last=False)


@dataclass
class Call:
    """What one call to a stand-in was and what it counted.

    `model` is the id the caller asked for, `answered_by` the model that answered (None: the same one). Token fields
    are what the response reported; `counted` is what was charged against each limit (keys differ per provider and
    are listed in each provider module), `limit` the limit that throttled the call.
    """

    provider: str
    model: str
    at: float
    stream: bool = False
    status: int = 200
    throttled: bool = False
    limit: str | None = None
    error: str | None = None
    answered_by: str | None = None
    max_tokens: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    counted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelBehaviour:
    """How a model behaves on a stand-in, besides its limits (each provider's model class adds those).

    output_tokens: tokens each call produces (capped at max_tokens); None takes the stand-in's default.
    answered_by: another model answers the calls (the response names it; see each provider for the counting).
    fail_status: every call answers this HTTP status, with the provider's error body for it, and counts nothing.
    reachable: False answers as for a key that cannot reach the model (Anthropic/OpenAI 404, Bedrock 403).
    pool: models naming the same pool share one set of limits (Anthropic rate-limits per model class).
    min_cacheable_tokens: shorter prompt prefixes are not cached.
    """

    output_tokens: int | None = None
    answered_by: str | None = None
    fail_status: int | None = None
    reachable: bool = True
    pool: str | None = None
    min_cacheable_tokens: int = 1024

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelBehaviour:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


@dataclass
class Request:
    """One HTTP request a stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class Reply:
    """Answers one request: a whole JSON body, or a stream sent in chunks (written errors are ignored: the call
    still settles when the client has gone away)."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler
        self.gone = False

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        payload = json.dumps(body).encode()
        try:
            self._handler.send_response(status)
            self._handler.send_header("Content-Type", content_type)
            self._handler.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self._handler.send_header(name, value)
            self._handler.end_headers()
            self._handler.wfile.write(payload)
            self._handler.wfile.flush()
        except OSError:
            self.gone = True

    def start(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self._handler.send_response(status)
            self._handler.send_header("Content-Type", content_type)
            self._handler.send_header("Transfer-Encoding", "chunked")
            self._handler.send_header("Cache-Control", "no-cache")
            for name, value in (headers or {}).items():
                self._handler.send_header(name, value)
            self._handler.end_headers()
        except OSError:
            self.gone = True

    def write(self, data: bytes) -> None:
        if self.gone or not data:
            return
        try:
            self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._handler.wfile.flush()
        except OSError:
            self.gone = True

    def end(self) -> None:
        if self.gone:
            return
        try:
            self._handler.wfile.write(b"0\r\n\r\n")
            self._handler.wfile.flush()
        except OSError:
            self.gone = True


class StandIn(ABC):
    """A threaded HTTP server on 127.0.0.1 speaking one provider's inference API and enforcing its limits.

    Use it as a context manager (or `start()` / `stop()`); `url` is its base URL, `requests` what it was sent,
    `calls` one `Call` per inference call. `models` maps model ids to their configuration (a dataclass of the
    provider's model class, or a dict of its fields); a model not listed answers as one the key cannot reach.
    `paused()` holds every admitted call before it settles (streams after their first event), so that a test can
    look at what an in-flight call holds; `wait_in_flight(n)` waits until n calls are held.

    Admin endpoints, for a stand-in in another process: GET /_standin/calls, GET /_standin/models,
    POST /_standin/models {"model": id, ...fields}, POST /_standin/reset.
    """

    provider: ClassVar[str]
    model_class: ClassVar[type[ModelBehaviour]] = ModelBehaviour

    def __init__(self, models: dict[str, Any] | None = None, *, output_tokens: int = 100, clock: Clock | None = None,
                 api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.clock: Clock = clock or time.time
        self.output_tokens = output_tokens
        self.api_key = api_key
        self.lock = threading.RLock()
        self.models: dict[str, ModelBehaviour] = {}
        for model_id, config in (models or {}).items():
            self.models[model_id] = self._coerce(config)
        self.requests: list[Request] = []
        self.calls: list[Call] = []
        self._limits: dict[str, Any] = {}
        self._gate = threading.Event()
        self._gate.set()
        self._held = 0
        self._held_changed = threading.Condition()
        self._serial = 0
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._handle(self)

            def do_POST(self) -> None:
                standin._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # Lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Configuration

    def _coerce(self, config: Any) -> ModelBehaviour:
        if isinstance(config, self.model_class):
            return config
        if isinstance(config, dict):
            return self.model_class.from_dict(config)
        raise TypeError(f"{self.provider} model configuration must be a {self.model_class.__name__} or a dict, not {config!r}")

    def configure(self, model: str, **changes: Any) -> ModelBehaviour:
        """Adds a model, or changes some of its fields; its limits start afresh when they change."""
        with self.lock:
            current = self.models.get(model) or self.model_class()
            unknown = set(changes) - {f.name for f in fields(current)}
            if unknown:
                raise ValueError(f"unknown {self.model_class.__name__} field(s) {sorted(unknown)}")
            self.models[model] = replace(current, **changes)
            self._limits.pop(self.pool(model), None)
            self._limits.pop(model, None)
            return self.models[model]

    def fail(self, model: str, status: int | None) -> None:
        """Every call to `model` answers `status` (None: back to normal)."""
        self.configure(model, fail_status=status)

    def answer_with(self, model: str, answering_model: str | None) -> None:
        """Calls to `model` are answered by `answering_model` (None: by itself)."""
        self.configure(model, answered_by=answering_model)

    def reset(self) -> None:
        """Forgets all usage, cache and records; keeps the configuration."""
        with self.lock:
            self._limits.clear()
            self.calls.clear()
            self.requests.clear()
            self._reset_caches()

    def _reset_caches(self) -> None:  # noqa: B027 - a hook: providers with caches override it
        pass

    def pool(self, model: str) -> str:
        config = self.models.get(model)
        return (config.pool if config and config.pool else model)

    def limits(self, model: str) -> Any:
        """The limiter state of a model's pool (created on first use); call with `lock` held."""
        key = self.pool(model)
        if key not in self._limits:
            self._limits[key] = self.new_limits(self.models.get(model) or self.model_class(), self.clock())
        return self._limits[key]

    @abstractmethod
    def new_limits(self, config: Any, now: float) -> Any:
        """Fresh limiter state for a model's configuration."""

    # Per-call helpers

    def output_for(self, config: ModelBehaviour, max_tokens: int, markers: dict[str, int]) -> tuple[int, bool]:
        """(output tokens, whether max_tokens cut the output short)."""
        wanted = markers.get("output_tokens", config.output_tokens if config.output_tokens is not None else self.output_tokens)
        return min(wanted, max_tokens), wanted > max_tokens

    def next_id(self) -> str:
        with self.lock:
            self._serial += 1
            return f"{self._serial:06d}{uuid.uuid4().hex[:18]}"

    def record(self, call: Call) -> Call:
        with self.lock:
            self.calls.append(call)
        return call

    def calls_for(self, model: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.model == model]

    def throttled(self) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.throttled]

    @contextmanager
    def paused(self) -> Iterator[StandIn]:
        """Admitted calls wait before they settle until the block ends."""
        self._gate.clear()
        try:
            yield self
        finally:
            self._gate.set()

    def wait_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        with self._held_changed:
            return self._held_changed.wait_for(lambda: self._held >= count, timeout)

    def hold(self) -> None:
        """Called by a provider between admitting a call and settling it."""
        if self._gate.is_set():
            return
        with self._held_changed:
            self._held += 1
            self._held_changed.notify_all()
        try:
            self._gate.wait(timeout=60)
        finally:
            with self._held_changed:
                self._held -= 1
                self._held_changed.notify_all()

    # HTTP

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        raw = self._read_body(handler)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = Request(method=handler.command, path=url.path, query=parse_qs(url.query),
                          headers={k.lower(): v for k, v in handler.headers.items()}, body=body)
        reply = Reply(handler)
        if request.path.startswith("/_standin/"):
            self._admin(request, reply)
            return
        with self.lock:
            self.requests.append(request)
        if raw and body is None:
            self.bad_request(request, reply, "The request body is not valid JSON.")
            return
        self.route(request, reply)

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    handler.rfile.readline()
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _admin(self, request: Request, reply: Reply) -> None:
        if request.method == "GET" and request.path == "/_standin/calls":
            with self.lock:
                reply.json(200, {"calls": [call.to_dict() for call in self.calls]})
        elif request.method == "GET" and request.path == "/_standin/models":
            with self.lock:
                reply.json(200, {"models": {model: asdict(config) for model, config in self.models.items()}})
        elif request.method == "POST" and request.path == "/_standin/models" and isinstance(request.body, dict) and "model" in request.body:
            changes = dict(request.body)
            model = changes.pop("model")
            try:
                config = self.configure(model, **changes)
            except (TypeError, ValueError) as error:
                reply.json(400, {"error": str(error)})
                return
            reply.json(200, {"model": model, **asdict(config)})
        elif request.method == "POST" and request.path == "/_standin/reset":
            self.reset()
            reply.json(200, {"reset": True})
        else:
            reply.json(404, {"error": f"no admin route {request.method} {request.path}"})

    @abstractmethod
    def route(self, request: Request, reply: Reply) -> None:
        """Answers one provider API request."""

    @abstractmethod
    def bad_request(self, request: Request, reply: Reply, message: str) -> None:
        """This provider's 400 answer."""
