"""router.payloads declares the /route and /usage bodies once: what the server takes and what its schema allows agree,
and a body is taken alike as the hot path decodes it and as DRF parses it."""

import json

import jsonschema
import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from router.engine import RouteRequest
from router.errors import ApiError
from router.payloads import MAX_EXCLUDED, MAX_RATELIMIT_HEADERS, MAX_TOKENS_PER_CALL, RouteBody, UsageReport, route_request, usage_report
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
    "apis": st.lists(st.sampled_from(["anthropic", "openai", "openai_compatible", "bedrock"]), max_size=3)
    | st.sampled_from([["vertex"], ["bedrock", 5], "bedrock"]),
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
assert set(ROUTE_VALUES) == set(RouteBody.__struct_fields__) and set(USAGE_VALUES) == set(UsageReport.__struct_fields__)


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


def accepted(validate, body) -> bool:
    try:
        validate(body)
    except (ValidationError, ApiError):
        return False
    return True


def encoded(body) -> bytes | None:
    """The body as a service sends it; None when JSON cannot carry it (a lone surrogate)."""
    try:
        return json.dumps(body).encode()
    except UnicodeEncodeError:
        return None


@pytest.mark.parametrize(("validate", "values", "declaration"), [
    (route_request, ROUTE_VALUES, RouteBody), (usage_report, USAGE_VALUES, UsageReport)], ids=["route", "usage"])
def test_a_body_the_server_takes_is_one_its_schema_allows(validate, values, declaration):
    """The schema is generated from the same declaration: whatever the server takes, the schema allows; whatever the
    schema refuses, the server refuses (the server refuses more: unprintable names, and the rules across fields)."""
    schema = jsonschema.Draft202012Validator(msgspec.json.schema(declaration))

    @given(body=bodies(values))
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None)
    def check(body):
        if accepted(validate, body):
            assert schema.is_valid(body), body

    check()


@pytest.mark.parametrize(("validate", "values"), [(route_request, ROUTE_VALUES), (usage_report, USAGE_VALUES)], ids=["route", "usage"])
def test_the_body_as_sent_and_as_drf_parsed_it_are_taken_alike(validate, values):
    """The hot path decodes the bytes (router.wsgi); DRF's view converts what its parser read: one answer."""

    @given(body=bodies(values))
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None)
    def check(body):
        raw = encoded(body)
        if raw is not None:
            assert accepted(validate, raw) == accepted(validate, body), body
            if accepted(validate, body):
                assert validate(raw) == validate(body)

    check()


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


def test_a_string_with_a_lone_surrogate_is_refused():
    with pytest.raises(ValidationError) as refusal:
        usage_report({"model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "idempotency_key": "key-\ud800"})

    assert list(refusal.value.detail) == ["idempotency_key"]


def test_a_blank_or_unprintable_name_is_refused_naming_the_field():
    for category in ["   ", "gen\u200beral"]:
        with pytest.raises(ValidationError) as refusal:
            route_request({"category": category})

        assert list(refusal.value.detail) == ["category"]


def test_a_name_is_trimmed():
    assert route_request(b'{"category": " general ", "request_id": " r-1 "}')[0] == RouteRequest(category="general", request_id="r-1")


def test_an_unknown_complexity_is_refused_naming_the_valid_ones():
    with pytest.raises(ApiError) as refusal:
        route_request(b'{"category": "general", "complexity": "huge"}')

    assert refusal.value.error_code == "unknown_complexity" and refusal.value.extra["valid"] == list(REQUEST_COMPLEXITIES)


def test_a_body_that_is_not_json_is_malformed():
    with pytest.raises(ApiError) as refusal:
        route_request(b'{"category": ')

    assert refusal.value.error_code == "malformed_request"
