"""Provider adapters: one per kind, behind the small interface in `base`."""

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.base import Adapter
from providers.adapters.bedrock import BedrockAdapter
from providers.adapters.openai import OpenAIAdapter
from providers.models import Provider
from switchboard.vocabulary import ProviderKind

ADAPTERS: dict[str, type[Adapter]] = {
    ProviderKind.ANTHROPIC: AnthropicAdapter,
    ProviderKind.OPENAI: OpenAIAdapter,
    ProviderKind.OPENAI_COMPATIBLE: OpenAIAdapter,
    ProviderKind.BEDROCK: BedrockAdapter,
}


def adapter_for(provider: Provider) -> Adapter:
    """The adapter for the provider's kind."""
    return ADAPTERS[provider.kind](provider)
