"""Exports of the audit: decisions as CSV, for the API (/api/v1/decisions?format=csv) and the fallback history.

A cell that a spreadsheet would read as a formula is written with a leading apostrophe, as OWASP's
"CSV Injection" advice says: an API key's name or a caller is text typed by someone, and opening the
export must not run it. Spreadsheets find a formula behind leading quotes, separators and spaces
(`;=1+1`, `"=1+1`), and take the full-width signs (`＝1+1`) as the ASCII ones, so those are looked
through too.
"""

import csv

import msgspec
from django.http import StreamingHttpResponse

from router.counting import LEDGER_FIELDS
from router.shapes import api_trace, rfc3339

# The columns of GET /api/v1/decisions, flat: `model` and `primary` are model keys, `provider` the chosen model's provider.
CSV_COLUMNS = ["decision_id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model", "provider", "primary",
               "answered_by", "reason", "policy_version", "reported", *LEDGER_FIELDS, "trace"]
FORMULA_SIGNS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\t\r")
# What a spreadsheet may skip before the sign: quotes, separators and spaces (ASCII and full-width).
LEADING = "\"'`;,|:\t\r\n \u00a0\u3000\uff02\uff07\uff1b\uff0c\uff5c\uff1a"


class _Echo:
    def write(self, value: str) -> str:
        return value


def cell(value) -> str:
    """A value as a CSV cell that a spreadsheet shows as text."""
    text = str(value)
    return "'" + text if text[:1] in FORMULA_SIGNS or text.lstrip(LEADING)[:1] in FORMULA_SIGNS else text


def decisions_csv(queryset, filename: str = "decisions.csv") -> StreamingHttpResponse:
    """Every decision of the queryset as CSV, streamed (the export of what the filters show)."""
    writer = csv.writer(_Echo())
    # The rows are read while the response streams, after the view has returned: from the database chosen now.
    queryset = queryset.using(queryset.db)

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        for d in queryset.iterator(chunk_size=2000):
            values = [d.id, rfc3339(d.created_at), d.caller, d.category, d.complexity, d.tier, d.outcome, d.model_key,
                      d.provider_slug, d.primary_key, d.answered_by, d.reason, d.policy_version, d.reported,
                      *(getattr(d, name) for name in LEDGER_FIELDS), msgspec.json.encode(api_trace(d.trace)).decode()]
            yield writer.writerow([cell(value) for value in values])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
