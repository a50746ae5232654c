"""The API calls tests make again and again: ask for a route, report usage, read the quotas and the audit."""


def post(api, path: str, **body):
    """POST the body as JSON to path and return the response, whatever its status: for a test that reads its headers."""
    return api.post(path, body, format="json")


def route(api, expect: int = 200, **body) -> dict:
    """POST /api/v1/route; asserts the status and returns the body."""
    response = post(api, "/api/v1/route", **body)
    assert response.status_code == expect, response.content
    return response.json()


def report(api, expect: int = 201, **body) -> dict:
    """POST /api/v1/usage; asserts the status and returns the body."""
    response = post(api, "/api/v1/usage", **body)
    assert response.status_code == expect, response.content
    return response.json()


def quotas_used(api) -> dict[str, float]:
    """Each quota's counted usage by quota name, as GET /api/v1/quotas shows it."""
    return {row["name"]: row["used"] for row in api.get("/api/v1/quotas").json()["results"]}


def audit(api, **filters) -> list[dict]:
    """GET /api/v1/decisions (which writes what waits in the ledger stream first): the decisions, newest first."""
    response = api.get("/api/v1/decisions", filters)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def stored_decisions():
    """The decisions in the database once what waits in the Redis stream is written: a "nothing stored"
    check read before that would pass whatever the code did."""
    from router.counters import flush_ledger
    from router.models import Decision

    flush_ledger()
    return Decision.objects.all()


def stored_reports():
    """The usage reports in the database once what waits in the Redis stream is written."""
    from router.counters import flush_ledger
    from router.models import UsageEvent

    flush_ledger()
    return UsageEvent.objects.all()


def epoch(moment: str) -> float:
    """An answer's time (RFC 3339 UTC with Z) as epoch seconds, to compare with time.time()."""
    from datetime import datetime

    assert moment.endswith("Z"), moment
    return datetime.fromisoformat(moment).timestamp()
