"""The ops pages: overview, fallback history, what-if and tuning. Thin: validate, call a selector, render."""

from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from alerts import selectors as alert_selectors
from dashboard import ranges, selectors
from dashboard.charts import quota_chart, volume_chart
from dashboard.forms import FallbackFilterForm, TuningForm, WhatIfForm
from dashboard.templatetags.dashboard_format import quota_amount
from router.counters import CountersUnavailable
from router.counting import display_amount
from router.engine import UnknownChoice
from router.exports import decisions_csv
from router.models import Decision
from router.replica import replica_reads
from router.snapshot import current_snapshot
from router.tuning import DEFAULT_DAYS, MAXIMUM_DAYS, TuningError, tune, tune_period

VIEW_PERMISSION = "router.view_decision"
HISTORY_PAGE_SIZE = 50
POLICY_VERSIONS_PAGE_SIZE = 20
# The history counts at most this many matches: an exact count of a long history is a full scan on every view.
HISTORY_COUNT_CAP = 10_000
REFRESH_SECONDS = 15
# Quick ranges offered above the history's filters: (label, hours back).
QUICK_RANGES = (("Last hour", 1), ("Last 6 h", 6), ("Last 24 h", 24), ("Last 7 days", 24 * 7))


class CappedPaginator(Paginator):
    """A paginator that counts no further than `cap` (LIMIT cap + 1 inside the COUNT), and says when it stopped."""

    def __init__(self, object_list, per_page: int, cap: int) -> None:
        super().__init__(object_list, per_page)
        self.cap = cap

    @cached_property
    def _counted(self) -> int:
        # Unordered: any cap + 1 matches will do, so the database can stop at the first ones it finds.
        return self.object_list.order_by()[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        return self._counted > self.cap


def dashboard_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Logged in (else to the admin's login page), with the viewers' permission (else 403), never cached."""
    return require_safe(never_cache(login_required(permission_required(VIEW_PERMISSION, raise_exception=True)(view))))


@dashboard_view
# The ledger's sums are already a second behind the counters (the drain), and the page refreshes every 15 s:
# a replica's lag of a few seconds more shows the same picture a moment later.
@replica_reads()
def overview(request: HttpRequest) -> HttpResponse:
    """What is hurting now, then decision volume over the range, quota bars per provider and pool, model
    availability and the latest fallbacks.

    `?range=` picks the range (ranges.PRESETS, or custom with since and until); `?fragment=1` answers the
    page's body alone, which the page's script fetches every 15 s unless paused.
    """
    range_form, period = ranges.time_range(request.GET)
    try:
        cards, counters_error = selectors.provider_cards(), ""
    except CountersUnavailable as exc:
        cards, counters_error = selectors.provider_cards(with_quotas=False), str(exc)
    volume = selectors.decision_volume(period.until, since=period.since, bucket_seconds=period.bucket_seconds)
    context = {
        "cards": cards,
        "counters_error": counters_error,
        "now": selectors.now_panel(cards, period.since, period.until),
        "volume": volume,
        "chart": volume_chart(volume),
        "latest": selectors.latest_fallbacks(),
        "unreported": selectors.unreported_by_caller(),
        "unroutable": selectors.unroutable_by_caller(period.until, since=period.since),
        "catalog": selectors.catalog(),
        "range": period,
        "range_form": range_form,
        "range_links": ranges.preset_links(period, request.GET),
        "generated_at": timezone.now(),
        "refresh_seconds": REFRESH_SECONDS,
    }
    template = "dashboard/_overview_body.html" if request.GET.get("fragment") else "dashboard/overview.html"
    return render(request, template, context)


@dashboard_view
def alerts(request: HttpRequest) -> HttpResponse:
    """What is firing now, the newest firings, repeats and resolutions, and each channel's delivery."""
    return render(request, "dashboard/alerts.html", {
        "open": alert_selectors.open_alerts(),
        "events": alert_selectors.recent_events(),
        "channels": alert_selectors.channel_states(),
        "last_evaluated_at": alert_selectors.last_evaluated_at(),
        "generated_at": timezone.now(),
    })


@dashboard_view
# The chart, the decisions and the tuning of a range, read like the overview's: a replica a few seconds behind
# misses at most the range's last seconds.
@replica_reads()
def quota(request: HttpRequest, quota_id: int) -> HttpResponse:
    """One quota: its usage now and over the range against its soft and hard limits, the policy changes that
    touched it, the fallbacks and refusals it caused, and its tuning."""
    spec = selectors.quota_spec(quota_id)
    if spec is None:
        raise Http404("No such quota in the current policy.")
    range_form, period = ranges.time_range(request.GET)
    try:
        bar = next((bar for bar in selectors.quota_bars() if bar.id == quota_id), None)
    except CountersUnavailable:
        bar = None
    limit, soft_limit = display_amount(spec, spec.limit), display_amount(spec, spec.soft_limit)
    markers = selectors.quota_policy_changes(spec, period.since, period.until)
    try:
        tuning = next(iter(tune_period(period.since, period.until, quota_ids={quota_id})), None)
    except TuningError:  # a range within the minute under way holds no whole minute
        tuning = None
    chart = quota_chart(selectors.quota_usage(spec, period.since, period.until, period.bucket_seconds, replayed=tuning),
                        since=period.since, until=period.until, limit=limit, soft_limit=soft_limit, markers=markers,
                        format_value=lambda value: quota_amount(value, spec.metric))
    return render(request, "dashboard/quota.html", {
        "quota": spec,
        "bar": bar,
        "limit": limit,
        "soft_limit": soft_limit,
        "chart": chart,
        "markers": markers,
        "decisions": selectors.quota_decisions(spec, period.since, period.until),
        "tuning": tuning,
        # Over a longer custom range the tuning keeps to the days the per-minute sums are sure to hold.
        "tuning_shortened": tuning is not None and tuning.since - period.since >= timedelta(minutes=1),
        "tuning_days_max": MAXIMUM_DAYS,
        "catalog": selectors.catalog(),
        "range": period,
        "range_form": range_form,
        "range_links": ranges.preset_links(period, request.GET),
        "generated_at": timezone.now(),
    })


@dashboard_view
# A history, and its export, of decisions already made: a replica a few seconds behind leaves out only the newest
# (GET /api/v1/decisions is the export that holds every decision answered before it).
@replica_reads()
def fallbacks(request: HttpRequest) -> HttpResponseBase:
    """Every fallback and refusal, filtered, 50 a page; `?format=csv` exports exactly what the filters show."""
    params = request.GET.copy()
    wants_csv = params.pop("format", [""])[-1] == "csv"
    params.pop("page", None)
    for name in [name for name, values in params.lists() if not any(values)]:
        del params[name]  # links (pages, export, quick ranges) carry only the filters in use
    form = FallbackFilterForm(params)
    if form.is_valid():
        decisions = selectors.fallback_decisions(**form.filters())
    elif wants_csv:
        return HttpResponse("Invalid filters: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
                            status=400, content_type="text/plain")
    else:
        decisions = Decision.objects.none()
    if wants_csv:
        return decisions_csv(decisions, filename=f"fallbacks-{timezone.now():%Y%m%d-%H%M%S}.csv")
    page = CappedPaginator(decisions, HISTORY_PAGE_SIZE, HISTORY_COUNT_CAP).get_page(request.GET.get("page"))
    return render(request, "dashboard/fallbacks.html", {
        "form": form,
        "page": page,
        "query": params.urlencode(),
        "quick_ranges": _quick_ranges(params),
        "catalog": selectors.catalog(),
        "generated_at": timezone.now(),
    })


def _quick_ranges(params: QueryDict) -> list[tuple[str, str]]:
    """(label, query string) for "last hour", "last 24 h", …: the filters in use with `since` moved."""
    now = timezone.now()
    ranges = []
    for label, hours in QUICK_RANGES:
        ranged = params.copy()
        ranged["since"] = (now - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")
        ranged.pop("until", None)
        ranges.append((label, ranged.urlencode()))
    return ranges


@dashboard_view
def what_if(request: HttpRequest) -> HttpResponse:
    """The decision the router would make for a request under assumed quota ratios and outages; a dry run."""
    try:
        ratios = selectors.current_ratios()
    except CountersUnavailable:
        ratios = {}  # the form still works; deciding will say that the counters cannot be read
    form = WhatIfForm(request.GET or None, snapshot=current_snapshot(), current_ratios=ratios)
    outcome = None
    if form.is_bound and form.is_valid():
        try:
            outcome = selectors.what_if(
                form.route_request(), caller=f"what-if:{request.user.get_username()}",
                used_ratio_overrides=form.ratio_overrides(), unavailable=form.unavailable_models(),
            )
        except UnknownChoice as exc:
            form.add_error(None, exc.detail)
        except CountersUnavailable as exc:
            form.add_error(None, f"The quota counters cannot be read right now: {exc}")
    return render(request, "dashboard/what_if.html", {"form": form, "what_if": outcome, "catalog": selectors.catalog(),
                                                      "generated_at": timezone.now()})


@dashboard_view
def policy_history(request: HttpRequest) -> HttpResponse:
    """Every policy change, newest first, with who made it, from where, why, and its diff."""
    page = Paginator(selectors.policy_versions(), POLICY_VERSIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "dashboard/policy_history.html", {"page": page, "can_roll_back": request.user.has_perm("router.change_policy")})


@dashboard_view
def policy_version(request: HttpRequest, number: int) -> HttpResponse:
    """The policy change a decision's `policy_version` names: that version, or the newest change before it
    (the availability refresh moves the number without changing the policy)."""
    version = selectors.policy_version_at(number)
    if version is None:
        raise Http404("No policy change is recorded at or before this version.")
    return render(request, "dashboard/policy_version.html", {"version": version, "number": number,
                                                              "can_roll_back": request.user.has_perm("router.change_policy")})


@dashboard_view
# Judged on whole minutes up to the last whole minute, over days: a replica seconds behind changes nothing.
@replica_reads()
def tuning(request: HttpRequest) -> HttpResponse:
    """Per quota, the fallbacks and refusals it caused over the period, how many fallbacks were unnecessary, and the ratio to try."""
    form = TuningForm(request.GET or {"days": DEFAULT_DAYS})
    rows = tune(form.cleaned_data["days"]) if form.is_valid() else []
    return render(request, "dashboard/tuning.html", {
        "form": form, "rows": rows, "period": rows[0] if rows else None, "generated_at": timezone.now(),
    }, status=200 if form.is_valid() else 400)
