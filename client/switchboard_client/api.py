"""Switchboard's routing API: `route` (which model, where, under which id), `report` (what the call used), and the
model catalog that maps a provider's model id to its Switchboard key. Sync (`RoutingAPI`) and async
(`AsyncRoutingAPI`) share everything but the I/O.

Every request is retried a bounded number of times with exponential backoff when Switchboard cannot be reached or
answers 5xx without a decision (e.g. 503 `counters_unavailable`); then `Unavailable` is raised. A refusal (429/503
with a decision id) is never retried here: it is raised as one of the `Refused` errors.

A POST is sent again after a transport error (a read timeout included: the first copy may have been answered) only
because it names itself: every route call carries a new `request_id` and every usage report its decision's
idempotency key, so Switchboard answers a copy with the first answer, counted once. A POST without either would be
sent again only when it surely never left (the connection could not be made).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx2

from switchboard_client import __version__
from switchboard_client.errors import RETRYABLE_CODES, SwitchboardError, Unavailable, error_for
from switchboard_client.usage import Failure, Observation, Usage, retry_after

if TYPE_CHECKING:
    from switchboard_client.failopen import FailOpenState

logger = logging.getLogger("switchboard_client")

Complexity = Literal["low", "medium", "high"]
ReportStatus = Literal["ok", "rate_limited", "error", "not_found", "not_sent"]
GEO_PREFIXES = ("us.", "eu.", "apac.", "global.", "jp.", "au.", "ca.", "us-gov.")


@dataclass(frozen=True)
class Model:
    """The model a decision chose: its Switchboard `key`, and how to reach it (`kind`, `base_url`, `region`) under
    which id (`invoke_id`: what to send to the provider; `model_id` is the provider's catalog id)."""

    key: str
    provider: str
    kind: str
    model_id: str
    invoke_id: str
    base_url: str | None = None
    region: str | None = None

    @classmethod
    def from_answer(cls, data: Mapping[str, Any]) -> Model:
        return cls(key=data["key"], provider=data["provider"], kind=data["kind"], model_id=data["model_id"],
                   invoke_id=data.get("invoke_id") or data["model_id"], base_url=data.get("base_url") or None,
                   region=data.get("region") or None)


@dataclass(frozen=True)
class Decision:
    """One routing answer. Call `model.invoke_id` at `model.provider`, then report it (once) with `report`."""

    id: str
    outcome: str
    reason: str
    model: Model
    primary: str
    """The key of the route's or tier's first model."""
    trace: list[dict[str, Any]] = field(default_factory=list)
    policy_version: int | None = None
    dry_run: bool = False
    attempt: int = 1
    """The try of the task this decision is for (1 for the first), as sent to Switchboard."""
    fail_open: bool = False
    """True for a decision the client made itself because Switchboard could not answer (`fail_open=`): its reports
    are queued until Switchboard answers again."""

    @classmethod
    def from_answer(cls, data: Mapping[str, Any], attempt: int = 1) -> Decision:
        return cls(id=str(data["decision_id"]), outcome=data.get("outcome", ""), reason=data.get("reason", ""),
                   model=Model.from_answer(data["model"]), primary=(data.get("primary") or {}).get("key", ""), trace=list(data.get("trace") or []),
                   policy_version=data.get("policy_version"), dry_run=bool(data.get("dry_run")), attempt=attempt)

    @property
    def idempotency_key(self) -> str:
        """The key of this decision's usage report: a retried report counts once."""
        return f"switchboard-client:{self.id}"


def route_body(*, category: str | None, complexity: str | None, tier: str | None, estimated_input_tokens: int | None,
               estimated_output_tokens: int | None, exclude: Iterable[str], attempt: int, dry_run: bool,
               estimated_cache_read_tokens: int | None = None, request_id: str | None = None,
               apis: Iterable[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if category is not None:
        body["category"] = category
    if complexity is not None:
        body["complexity"] = complexity
    if tier is not None:
        body["tier"] = tier
    if estimated_input_tokens is not None:
        body["estimated_input_tokens"] = max(0, int(estimated_input_tokens))
    if estimated_output_tokens is not None:
        body["estimated_output_tokens"] = max(0, int(estimated_output_tokens))
    if estimated_cache_read_tokens:
        body["estimated_cache_read_tokens"] = max(0, int(estimated_cache_read_tokens))
    excluded = list(dict.fromkeys(exclude))
    if excluded:
        body["exclude"] = excluded
    if attempt > 1:
        body["attempt"] = attempt
    if dry_run:
        body["dry_run"] = True
    if request_id is not None:
        body["request_id"] = request_id
    if apis is not None:
        body["apis"] = list(apis)
    return body


def new_request_id() -> str:
    """A routing request's own id: a copy sent again after a transport error answers the same decision."""
    return f"switchboard-client:{uuid.uuid4().hex}"


def _may_resend(body: Mapping[str, Any] | None, exc: httpx2.TransportError) -> bool:
    """Whether a request that met a transport error may be sent again: it names itself (a GET, a route call's
    request_id, a report's idempotency key), or it never left."""
    names_itself = body is None or "request_id" in body or "idempotency_key" in body
    return names_itself or isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)


def report_body(decision: Decision, usage: Usage | None, *, status: ReportStatus, model: str | None, retry_after: int | None,
                ratelimit_headers: Mapping[str, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"decision_id": decision.id, "status": status, "idempotency_key": decision.idempotency_key}
    if model and model != decision.model.key:
        body["model"] = model
    if usage is not None or status == "ok":
        usage = usage or Usage()
        body.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens)
        if usage.cache_write_input_tokens:
            body["cache_write_input_tokens"] = usage.cache_write_input_tokens
    if retry_after is not None:
        body["retry_after"] = retry_after
    if ratelimit_headers:
        body["ratelimit_headers"] = dict(ratelimit_headers)
    return body


def _json(response: httpx2.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": str(body)[:500]}


def _retryable_error(response: httpx2.Response) -> SwitchboardError | None:
    """The error of a 5xx that is not a refusal (a refusal names its decision): Switchboard cannot decide right
    now, and the call may be retried. None for any other answer."""
    body = _json(response)
    if response.status_code >= 500 and ("decision_id" not in body or body.get("error") in RETRYABLE_CODES):
        return error_for(response.status_code, body, retry_after(response.headers))
    return None


def _unavailable(error: SwitchboardError | None) -> Unavailable:
    """The error raised when no retry is left: Unavailable, with what the last try met."""
    assert error is not None
    if isinstance(error, Unavailable):
        return error
    return Unavailable(str(error), status=error.status, code=error.code, body=error.body, retry_after=error.retry_after)


def _candidates(answered_id: str) -> list[str]:
    """The ids a provider's answering-model id may be listed under: itself, an ARN's last part, a profile's model."""
    ids = [answered_id, answered_id.rsplit("/", 1)[-1]]
    for prefix in GEO_PREFIXES:
        if ids[1].startswith(prefix):
            ids.append(ids[1][len(prefix):])
    return list(dict.fromkeys(ids))


class _Base:
    """Configuration and what the sync and async APIs share."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, retries: int = 2, backoff: float = 0.1,
                 catalog_ttl: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.catalog_ttl = catalog_ttl
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": f"switchboard-client/{__version__}"}
        self._catalog: dict[str, dict[str, str]] | None = None
        self._catalog_at = 0.0
        self._fail_open: FailOpenState | None = None

    def _queue(self, decision: Decision, body: dict[str, Any]) -> dict[str, Any]:
        """Keeps a fail-open decision's report until Switchboard answers again (a report without a decision, naming the
        model, under the decision's own idempotency key); returns it, marked `queued`."""
        report = {name: value for name, value in body.items() if name != "decision_id"}
        report["model"] = report.get("model") or decision.model.key
        if self._fail_open is not None:
            self._fail_open.enqueue(report)
        return {**report, "queued": True}

    def _unreachable(self, exc: httpx2.TransportError) -> Unavailable:
        error = Unavailable(f"Switchboard at {self.url} cannot be reached: {exc!r}")
        error.__cause__ = exc
        return error

    def _delay(self, retry: int) -> float:
        return self.backoff * (2 ** (retry - 1)) * (0.5 + random.random() / 2)

    def _result(self, response: httpx2.Response) -> dict[str, Any]:
        body = _json(response)
        if response.status_code >= 400:
            raise error_for(response.status_code, body, retry_after(response.headers))
        return body

    def _catalog_fresh(self) -> dict[str, dict[str, str]] | None:
        if self._catalog is not None and time.monotonic() - self._catalog_at < self.catalog_ttl:
            return self._catalog
        return None

    def _keep_catalog(self, rows: list[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
        catalog: dict[str, dict[str, str]] = {}
        for row in rows:
            ids = catalog.setdefault(str(row.get("provider")), {})
            for name in ("model_id", "invoke_id"):
                if row.get(name):
                    ids.setdefault(str(row[name]), str(row["key"]))
        self._catalog, self._catalog_at = catalog, time.monotonic()
        return catalog

    @staticmethod
    def _same_model(decision: Decision, answered_id: str | None) -> bool:
        return not answered_id or bool({decision.model.invoke_id, decision.model.model_id} & set(_candidates(answered_id)))

    @staticmethod
    def _key_in(catalog: Mapping[str, Mapping[str, str]], decision: Decision, answered_id: str) -> str | None:
        ids = catalog.get(decision.model.provider, {})
        for candidate in _candidates(answered_id):
            key = ids.get(candidate)
            if key:
                return None if key == decision.model.key else key
        return None


class RoutingAPI(_Base):
    """Synchronous calls to Switchboard's API. `http_client` (an httpx2.Client) may be handed in."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, retries: int = 2, backoff: float = 0.1,
                 catalog_ttl: float = 300.0, http_client: httpx2.Client | None = None) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl)
        self._own_http = http_client is None
        self._http = http_client or httpx2.Client(timeout=timeout)

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> httpx2.Response:
        url = path if path.startswith("http") else self.url + path
        error: SwitchboardError | None = None
        for retry in range(self.retries + 1):
            if retry:
                time.sleep(self._delay(retry))
            try:
                response = self._http.request(method, url, json=body, headers=self._headers, timeout=self.timeout)
            except httpx2.TransportError as exc:
                error = self._unreachable(exc)
                if not _may_resend(body, exc):
                    break
                continue
            error = _retryable_error(response)
            if error is None:
                return response
        raise _unavailable(error)

    def route(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
              estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
              attempt: int = 1, dry_run: bool = False, estimated_cache_read_tokens: int | None = None,
              apis: Iterable[str] | None = None) -> Decision:
        """Which model to call for this task, now. `estimated_input_tokens` is all the input, cached or not;
        `estimated_cache_read_tokens` the part of it you expect the provider's prompt cache to hold; `apis` the provider
        kinds you can call (e.g. `["anthropic", "bedrock"]`: models of other kinds are passed over, never reserved;
        a route with none of them raises RequestError `unroutable`). Raises a `Refused`
        error (e.g. `NoCapacity`, `QuotaExceeded`) when none may be, `RequestError` for bad input and `Unavailable` when Switchboard cannot answer."""
        body = route_body(category=category, complexity=complexity, tier=tier, estimated_input_tokens=estimated_input_tokens,
                          estimated_output_tokens=estimated_output_tokens, exclude=exclude, attempt=attempt, dry_run=dry_run,
                          estimated_cache_read_tokens=estimated_cache_read_tokens, request_id=new_request_id(), apis=apis)
        return Decision.from_answer(self._result(self._send("POST", "/api/v1/route", body)), attempt)

    def report(self, decision: Decision, usage: Usage | None = None, *, status: ReportStatus = "ok", model: str | None = None,
               retry_after: int | None = None, ratelimit_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Reports what the decision's call used (once per decision: the report carries the decision's idempotency
        key, so sending it again counts once). `model` is the Switchboard key of the model that answered when it was
        not the decision's. A failed call: `status` and `retry_after`, usage optional. Returns the usage event."""
        body = report_body(decision, usage, status=status, model=model, retry_after=retry_after, ratelimit_headers=ratelimit_headers)
        if decision.fail_open:
            return self._queue(decision, body)
        return self._result(self._send("POST", "/api/v1/usage", body))

    def release(self, decision: Decision) -> dict[str, Any]:
        """Reports that the decision's call was never sent to the provider (`status: not_sent`): its whole reservation
        is given back on every quota, whatever the provider's rule, and no cooldown is fed. A fail-open decision
        reserved nothing: nothing is sent."""
        if decision.fail_open:
            return {"status": "not_sent", "queued": False}
        return self.report(decision, status="not_sent")

    def flush_reports(self) -> int:
        """Sends the usage reports queued while failing open (see `switchboard_client.failopen`); returns how many
        were sent. The client calls it when Switchboard answers again."""
        taken = self._fail_open.take() if self._fail_open is not None else None
        if taken is None:
            return 0
        reports, dropped = taken
        sent = 0
        try:
            for body in reports:
                try:
                    self._result(self._send("POST", "/api/v1/usage", body))
                except Unavailable:
                    raise
                except SwitchboardError as exc:
                    logger.warning("switchboard_client: a usage report queued while failing open was refused: %s", exc)
                sent += 1
        except Unavailable:
            pass
        finally:
            self._fail_open.done(reports[sent:], sent, dropped)
        return sent

    def answering_key(self, decision: Decision, answered_id: str | None) -> str | None:
        """The Switchboard key of the model a provider says answered, when it is not the decision's model (None
        otherwise, also when the id is not in the catalog or the key may not read it)."""
        if self._same_model(decision, answered_id):
            return None
        assert answered_id is not None
        catalog = self._catalog_fresh()
        if catalog is None:
            catalog = self._load_catalog()
        return self._key_in(catalog, decision, answered_id)

    def _load_catalog(self) -> dict[str, dict[str, str]]:
        rows: list[Mapping[str, Any]] = []
        url: str | None = "/api/v1/models"
        try:
            while url:
                page = self._result(self._send("GET", url))
                rows.extend(page.get("results") or [])
                url = page.get("next")
        except Unavailable as exc:
            logger.warning("switchboard_client: model catalog unavailable (%s); reporting the decision's model", exc)
            return {}
        except SwitchboardError as exc:
            logger.info("switchboard_client: model catalog not readable (%s); reporting the decision's model", exc)
        return self._keep_catalog(rows)

    def report_observation(self, decision: Decision, observation: Observation) -> dict[str, Any]:
        """Reports a successful call from what its response said (usage, answering model, rate-limit headers)."""
        return self.report(decision, observation.usage, model=self.answering_key(decision, observation.answered_by),
                           ratelimit_headers=observation.ratelimit_headers)

    def report_failure(self, decision: Decision, failure: Failure | None, usage: Usage | None = None) -> dict[str, Any]:
        """Reports a failed call; `None` (the caller's error) releases the decision."""
        if failure is None:
            return self.report(decision, usage or Usage())
        return self.report(decision, usage, status=failure.status, retry_after=failure.retry_after,
                           ratelimit_headers=failure.ratelimit_headers)

    def health(self) -> dict[str, Any]:
        """GET /api/v1/health (no auth needed)."""
        return _json(self._send("GET", "/api/v1/health"))

    def close(self) -> None:
        if self._own_http:
            self._http.close()


class AsyncRoutingAPI(_Base):
    """The same calls as `RoutingAPI`, awaited. `http_client` (an httpx2.AsyncClient) may be handed in."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0, retries: int = 2, backoff: float = 0.1,
                 catalog_ttl: float = 300.0, http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(url, api_key, timeout=timeout, retries=retries, backoff=backoff, catalog_ttl=catalog_ttl)
        self._own_http = http_client is None
        self._http = http_client or httpx2.AsyncClient(timeout=timeout)

    async def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> httpx2.Response:
        url = path if path.startswith("http") else self.url + path
        error: SwitchboardError | None = None
        for retry in range(self.retries + 1):
            if retry:
                await asyncio.sleep(self._delay(retry))
            try:
                response = await self._http.request(method, url, json=body, headers=self._headers, timeout=self.timeout)
            except httpx2.TransportError as exc:
                error = self._unreachable(exc)
                if not _may_resend(body, exc):
                    break
                continue
            error = _retryable_error(response)
            if error is None:
                return response
        raise _unavailable(error)

    async def route(self, category: str | None = None, *, complexity: Complexity | None = None, tier: str | None = None,
                    estimated_input_tokens: int | None = None, estimated_output_tokens: int | None = None, exclude: Iterable[str] = (),
                    attempt: int = 1, dry_run: bool = False, estimated_cache_read_tokens: int | None = None,
              apis: Iterable[str] | None = None) -> Decision:
        """See `RoutingAPI.route`."""
        body = route_body(category=category, complexity=complexity, tier=tier, estimated_input_tokens=estimated_input_tokens,
                          estimated_output_tokens=estimated_output_tokens, exclude=exclude, attempt=attempt, dry_run=dry_run,
                          estimated_cache_read_tokens=estimated_cache_read_tokens, request_id=new_request_id(), apis=apis)
        return Decision.from_answer(self._result(await self._send("POST", "/api/v1/route", body)), attempt)

    async def report(self, decision: Decision, usage: Usage | None = None, *, status: ReportStatus = "ok", model: str | None = None,
                     retry_after: int | None = None, ratelimit_headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """See `RoutingAPI.report`."""
        body = report_body(decision, usage, status=status, model=model, retry_after=retry_after, ratelimit_headers=ratelimit_headers)
        if decision.fail_open:
            return self._queue(decision, body)
        return self._result(await self._send("POST", "/api/v1/usage", body))

    async def release(self, decision: Decision) -> dict[str, Any]:
        """See `RoutingAPI.release`."""
        if decision.fail_open:
            return {"status": "not_sent", "queued": False}
        return await self.report(decision, status="not_sent")

    async def flush_reports(self) -> int:
        """See `RoutingAPI.flush_reports`."""
        taken = self._fail_open.take() if self._fail_open is not None else None
        if taken is None:
            return 0
        reports, dropped = taken
        sent = 0
        try:
            for body in reports:
                try:
                    self._result(await self._send("POST", "/api/v1/usage", body))
                except Unavailable:
                    raise
                except SwitchboardError as exc:
                    logger.warning("switchboard_client: a usage report queued while failing open was refused: %s", exc)
                sent += 1
        except Unavailable:
            pass
        finally:
            self._fail_open.done(reports[sent:], sent, dropped)
        return sent

    async def answering_key(self, decision: Decision, answered_id: str | None) -> str | None:
        """See `RoutingAPI.answering_key`."""
        if self._same_model(decision, answered_id):
            return None
        assert answered_id is not None
        catalog = self._catalog_fresh()
        if catalog is None:
            catalog = await self._load_catalog()
        return self._key_in(catalog, decision, answered_id)

    async def _load_catalog(self) -> dict[str, dict[str, str]]:
        rows: list[Mapping[str, Any]] = []
        url: str | None = "/api/v1/models"
        try:
            while url:
                page = self._result(await self._send("GET", url))
                rows.extend(page.get("results") or [])
                url = page.get("next")
        except Unavailable as exc:
            logger.warning("switchboard_client: model catalog unavailable (%s); reporting the decision's model", exc)
            return {}
        except SwitchboardError as exc:
            logger.info("switchboard_client: model catalog not readable (%s); reporting the decision's model", exc)
        return self._keep_catalog(rows)

    async def report_observation(self, decision: Decision, observation: Observation) -> dict[str, Any]:
        """See `RoutingAPI.report_observation`."""
        model = await self.answering_key(decision, observation.answered_by)
        return await self.report(decision, observation.usage, model=model, ratelimit_headers=observation.ratelimit_headers)

    async def report_failure(self, decision: Decision, failure: Failure | None, usage: Usage | None = None) -> dict[str, Any]:
        """See `RoutingAPI.report_failure`."""
        if failure is None:
            return await self.report(decision, usage or Usage())
        return await self.report(decision, usage, status=failure.status, retry_after=failure.retry_after,
                                 ratelimit_headers=failure.ratelimit_headers)

    async def health(self) -> dict[str, Any]:
        """GET /api/v1/health (no auth needed)."""
        return _json(await self._send("GET", "/api/v1/health"))

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()


__all__ = ["AsyncRoutingAPI", "Complexity", "Decision", "Model", "ReportStatus", "RoutingAPI", "report_body", "route_body"]
