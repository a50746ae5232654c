"""router.payloads validates the /route and /usage bodies in plain Python; the DRF serializers that declare the same
bodies for the OpenAPI schema must accept and refuse exactly the same bodies, with the same values."""

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from router.engine import RouteRequest
from router.errors import ApiError
from router.payloads import ROUTE_FIELDS, USAGE_FIELDS, route_request, usage_report
from router.serializers import MAX_EXCLUDED, MAX_RATELIMIT_HEADERS, MAX_TOKENS_PER_CALL, RouteRequestSerializer, UsageRequestSerializer
from switchboard.vocabulary import REQUEST_COMPLEXITIES, UsageStatus

EXAMPLES = 300
REFUSED = "refused"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=6,
)
near_miss_strings = st.sampled_from([
    "", "   ", " \t\n", "a\x00b", "\ud800", "tail\udfff", "x" * 201, "12", "1.5", "LOW", "Medium ", "not-a-uuid", "ok "])
near_miss_others = st.sampled_from([
    True, False, 0, -1, 1.0, 1.5, -0.0, 10**20, MAX_TOKENS_PER_CALL + 1, 86_401, None, [], {}, ["low"],
    {"x ratelimit": "1"}, {"x-ratelimit-remaining-requests": 5}, {"x-ratelimit-remaining-requests": "  "},
    {"x-ratelimit-remaining-requests": "\ud800"}, {"": "1"}, {f"x-h{i}": "1" for i in range(MAX_RATELIMIT_HEADERS + 1)},
])
spoiled_values = near_miss_strings | near_miss_others | json_values

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=64)
padded = st.builds(lambda name, left, right: left + name + right, names, st.sampled_from(["", " "]), st.sampled_from(["", "  "]))
tokens = st.integers(0, MAX_TOKENS_PER_CALL) | st.sampled_from([0, 1.0, 42.0, float(MAX_TOKENS_PER_CALL), MAX_TOKENS_PER_CALL])
uuid_strings = st.uuids().flatmap(lambda u: st.sampled_from([str(u), u.hex, f"{{{u}}}", f"urn:uuid:{u}", str(u).upper()]))
header_names = st.sampled_from(["x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens", "retry-after"]) | st.from_regex(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}", fullmatch=True)
header_values = st.sampled_from(["0", "59", " 1000 ", "6m0s"]) | names

model_keys = st.sampled_from(["gpt-4o", " claude-3.5-sonnet ", "anthropic.claude-3:0", "-dash", "a b"]) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._:-]{0,30}", fullmatch=True)

ROUTE_VALUES = {
    "category": padded,
    "complexity": st.sampled_from(REQUEST_COMPLEXITIES),
    "tier": padded,
    "estimated_input_tokens": tokens,
    "estimated_output_tokens": tokens,
    "estimated_cache_read_tokens": tokens,
    "attempt": st.integers(-1, 1001) | st.sampled_from([1, 2.0, "2", True]),
    "exclude": st.lists(model_keys, max_size=3) | st.sampled_from([[], ["a"] * (MAX_EXCLUDED + 1), ["ok", " "], ["ok", 5], "gpt-4o"]),
    "dry_run": st.booleans(),
    "request_id": padded,
}
USAGE_VALUES = {
    "model": model_keys,
    "input_tokens": tokens,
    "output_tokens": tokens,
    "cache_read_input_tokens": tokens,
    "cache_write_input_tokens": tokens,
    "status": st.sampled_from(UsageStatus.values),
    "decision_id": uuid_strings,
    "idempotency_key": padded,
    "retry_after": st.integers(0, 86_400),
    "ratelimit_headers": st.dictionaries(header_names, header_values, max_size=4),
}
assert set(ROUTE_VALUES) == set(ROUTE_FIELDS) and set(USAGE_VALUES) == set(USAGE_FIELDS)


# NUL and lone surrogates (what a JSON "\ud800" escape decodes to) are refused; an em space is stripped at either end.
FLAWS = ["\x00", "\ud800", "\udfff", "\u2003"]


def flawed(value, flaw: str, at: int):
    """A well-formed string with one awkward character in it; in one of its values, for a dict of headers."""
    if isinstance(value, dict) and value:
        name = sorted(value)[at % len(value)]
        return {**value, name: flawed(value[name], flaw, at)}
    if isinstance(value, str):
        return value[:at % (len(value) + 1)] + flaw + value[at % (len(value) + 1):]
    return value


@st.composite
def bodies(draw, values: dict[str, st.SearchStrategy]):
    """Mostly well-formed objects with a field left out, spoiled or flawed here and there, so that both accepting and
    refusing are common; now and then an unknown field, or a body that is not an object at all."""
    if draw(st.sampled_from([False] * 9 + [True])):
        return draw(st.lists(json_values, max_size=3) | st.text(max_size=10) | st.none() | st.integers())
    body = {}
    for name, well_formed in values.items():
        kind = draw(st.sampled_from(["well-formed"] * 6 + ["absent"] * 2 + ["spoiled"] + ["flawed"] * 2))
        if kind == "well-formed":
            body[name] = draw(well_formed)
        elif kind == "spoiled":
            body[name] = draw(spoiled_values)
        elif kind == "flawed":
            body[name] = flawed(draw(well_formed), draw(st.sampled_from(FLAWS)), draw(st.integers(0, 99)))
    unknown = draw(st.sampled_from([None] * 20 + ["categroy", "model_name", "extra", ""]))
    if unknown is not None:
        body[unknown] = draw(json_values)
    return body


def plain(validate, body):
    try:
        return validate(body)
    except (ValidationError, ApiError):
        return REFUSED


def serialized(serializer_class, body):
    serializer = serializer_class(data=body)
    try:
        valid = serializer.is_valid()
    except ApiError:
        return REFUSED
    return serializer.validated_data if valid else REFUSED


@given(body=bodies(ROUTE_VALUES))
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None)
def test_the_route_payload_accepts_and_refuses_what_its_serializer_does(body):
    ours, theirs = plain(route_request, body), serialized(RouteRequestSerializer, body)

    assert (ours == REFUSED) == (theirs == REFUSED), (ours, theirs)
    if ours != REFUSED:
        request, dry_run = ours
        assert request == RouteRequest(
            category=theirs.get("category"), complexity=theirs["complexity"], tier=theirs.get("tier"),
            estimated_input_tokens=theirs["estimated_input_tokens"], estimated_output_tokens=theirs["estimated_output_tokens"],
            estimated_cache_read_tokens=theirs["estimated_cache_read_tokens"], exclude=frozenset(theirs.get("exclude", ())),
            attempt=theirs["attempt"], request_id=theirs.get("request_id"),
        )
        assert dry_run is theirs["dry_run"]


@given(body=bodies(USAGE_VALUES))
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None)
def test_the_usage_payload_accepts_and_refuses_what_its_serializer_does(body):
    ours, theirs = plain(usage_report, body), serialized(UsageRequestSerializer, body)

    assert (ours == REFUSED) == (theirs == REFUSED), (ours, theirs)
    if ours != REFUSED:
        assert (ours.model, ours.input_tokens, ours.output_tokens, ours.status) == (
            theirs.get("model"), theirs["input_tokens"], theirs["output_tokens"], theirs["status"])
        assert (ours.cache_read_input_tokens, ours.cache_write_input_tokens) == (
            theirs["cache_read_input_tokens"], theirs["cache_write_input_tokens"])
        assert (ours.decision_id, ours.idempotency_key, ours.retry_after) == (
            theirs.get("decision_id"), theirs.get("idempotency_key"), theirs.get("retry_after"))
        assert ours.ratelimit_headers == theirs.get("ratelimit_headers", {})


def test_a_route_body_naming_only_a_category_gets_the_defaults():
    assert route_request({"category": "general"}) == (RouteRequest(category="general"), False)


def test_a_usage_report_naming_the_model_and_token_counts_is_accepted_as_ok():
    report = usage_report({"model": "gpt-4o", "input_tokens": 120, "output_tokens": 30})

    assert (report.model, report.input_tokens, report.output_tokens, report.status) == ("gpt-4o", 120, 30, "ok")
    assert (report.decision_id, report.idempotency_key, report.retry_after, report.ratelimit_headers) == (None, None, None, {})


def test_an_unknown_field_is_refused_naming_it():
    with pytest.raises(ValidationError) as refusal:
        route_request({"category": "general", "categroy": "coding"})

    assert list(refusal.value.detail) == ["categroy"]


def test_a_token_count_sent_as_a_string_is_refused():
    with pytest.raises(ValidationError) as refusal:
        usage_report({"model": "gpt-4o", "input_tokens": "120", "output_tokens": 30})

    assert list(refusal.value.detail) == ["input_tokens"]


def test_a_string_with_a_lone_surrogate_is_refused_like_the_serializer_does():
    with pytest.raises(ValidationError) as refusal:
        usage_report({"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "idempotency_key": "key-\ud800"})

    assert list(refusal.value.detail) == ["idempotency_key"]
