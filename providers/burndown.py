"""Bedrock's output-token burndown rates: how many quota tokens one output token takes.

AWS ("How tokens are counted in Amazon Bedrock", and the quotas page's "Token burndown rate for
Anthropic Claude 4 models") counts each output token of the Claude models it lists five times
against a tokens-per-minute or per-day quota: Claude Opus 4, Sonnet 4 and their successors. Every
other model counts one for one. Only Bedrock burns down: the same Claude models called through
Anthropic's own API count one for one. A model's `burndown_rate` in the policy overrides this table.
"""

import re

from switchboard.vocabulary import ProviderKind

# (pattern over the model id without its inference-profile prefix, rate); the first match wins.
BURNDOWN_RATES = (
    (re.compile(r"anthropic\.claude-(opus|sonnet|haiku)-([4-9]|\d\d)"), 5),
)
DEFAULT_RATE = 1
# The most a policy may set: no provider burns an output token down a hundred times.
MAX_BURNDOWN_RATE = 100
# Inference profile ids put a geography before the model id: us., eu., apac., global., …
PROFILE_PREFIX = re.compile(r"^[a-z]{2,6}\.(?=[a-z0-9-]+\.)")


def default_burndown_rate(kind: str, model_id: str) -> int:
    """The burndown rate AWS applies to the model, from its id (a profile id is understood as its model's)."""
    if kind != ProviderKind.BEDROCK:
        return DEFAULT_RATE
    bare = PROFILE_PREFIX.sub("", model_id.rsplit("/", 1)[-1])
    return next((rate for pattern, rate in BURNDOWN_RATES if pattern.match(bare)), DEFAULT_RATE)
