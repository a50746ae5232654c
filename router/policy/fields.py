"""What a policy document may hold: its sections and fields, their ranges, and the one error it raises."""

from typing import Any

from switchboard.vocabulary import Complexity

SECTIONS = ("providers", "models", "tiers", "categories", "routes")
TOP_LEVEL_KEYS = ("version", "default_tier", *SECTIONS)
PROVIDER_FIELDS = (
    "slug", "kind", "base_url", "region", "aws_profile", "credential_env", "enabled", "allow_global_profile",
    "probe_models", "request_timeout_seconds", "cooldown_failures", "cooldown_window_seconds", "cooldown_seconds",
    "max_retry_after_seconds",
)
QUOTA_FIELDS = ("name", "metric", "window", "reset", "limit", "soft_limit_ratio")
MODEL_FIELDS = ("key", "model_id", "input_cost_per_mtok", "output_cost_per_mtok", "cache_read_cost_per_mtok", "cache_write_cost_per_mtok",
                "context_window", "burndown_rate", "enabled")
CATEGORY_FIELDS = ("slug", "fallback", "may_use_headroom", "description")
# A route's or tier's model lists and attempt limits (besides its category and complexity, or its slug).
CHAIN_FIELDS = ("models", "escalation", "escalate_after", "max_attempts")
# Exported even when equal to their default, because a reader needs them to understand the entry.
ALWAYS_EXPORTED = {"slug", "kind", "key", "model_id", "context_window", "metric", "window", "limit", "soft_limit_ratio", "fallback"}
# Keys a provider entry may never carry: secrets are write-only and are set in the admin.
SECRET_KEYS = {"secret", "encrypted_secret", "new_secret", "api_key"}
COMPLEXITY_ORDER = [Complexity.LOW, Complexity.MEDIUM, Complexity.HIGH, Complexity.ANY]
RANGES = {
    "limit": (lambda d: d > 0, "must be above 0"),
    "soft_limit_ratio": (lambda d: 0 < d <= 1, "must be above 0 and at most 1"),
    "input_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "output_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "cache_read_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "cache_write_cost_per_mtok": (lambda d: d >= 0, "must be 0 or more"),
    "burndown_rate": (lambda d: 1 <= d <= 100, "must be from 1 to 100"),
    "escalate_after": (lambda d: 1 <= d <= 1000, "must be from 1 to 1000"),
    "max_attempts": (lambda d: 1 <= d <= 1000, "must be from 1 to 1000"),
    "context_window": (lambda d: d >= 1, "must be at least 1"),
    "request_timeout_seconds": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_failures": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_window_seconds": (lambda d: d >= 1, "must be at least 1"),
    "cooldown_seconds": (lambda d: d >= 1, "must be at least 1"),
    "max_retry_after_seconds": (lambda d: 1 <= d <= 3600, "must be from 1 to 3600"),
}


# An error about a document says where and what, whatever the document holds: each problem is cut
# to MAX_PROBLEM_CHARS (a value quoted in it may be megabytes long) and at most MAX_PROBLEMS are listed.
MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 300


class PolicyError(Exception):
    """A policy document that cannot be applied; `problems` says what is wrong, and where."""

    def __init__(self, problems: list[str]) -> None:
        shown = [problem if len(problem) <= MAX_PROBLEM_CHARS else problem[:MAX_PROBLEM_CHARS - 1] + "…"
                 for problem in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"and {len(problems) - MAX_PROBLEMS} more problems")
        self.problems = shown
        super().__init__("\n".join(shown))


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else type(value).__name__


def automatic_quota_name(metric: str, window: str, pool: list[str]) -> str:
    """The name of a quota that the file leaves unnamed, e.g. tokens-day or requests-minute-bedrock-sonnet-4-5."""
    name = f"{metric}-{window}"
    return name + "-" + "-".join(sorted(pool)) if pool else name
