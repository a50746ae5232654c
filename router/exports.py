"""Exports of the audit: decisions as CSV, for the API (/api/v1/decisions?format=csv) and the fallback history."""

import csv
import json

from django.http import StreamingHttpResponse

CSV_COLUMNS = ["id", "created_at", "caller", "category", "complexity", "tier", "outcome", "model", "provider", "primary",
               "reason", "policy_version", "trace"]


class _Echo:
    def write(self, value: str) -> str:
        return value


def decisions_csv(queryset, filename: str = "decisions.csv") -> StreamingHttpResponse:
    """Every decision of the queryset as CSV, streamed (the export of what the filters show)."""
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        for d in queryset.iterator(chunk_size=2000):
            yield writer.writerow([d.id, d.created_at.isoformat(), d.caller, d.category, d.complexity, d.tier, d.outcome,
                                   d.model_key, d.provider_slug, d.primary_key, d.reason, d.policy_version,
                                   json.dumps(d.trace, separators=(",", ":"))])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
