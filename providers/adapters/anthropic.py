"""Anthropic: list the models the key can see; resolve aliases; optionally probe with one token."""

import anthropic

from providers.adapters import base


class AnthropicAdapter(base.ListingAdapter):
    """The Anthropic Messages API, through the official SDK. `base_url` is the bare host."""

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=self.api_key(),
            base_url=self.provider.base_url or None,
            timeout=self.timeout,
            max_retries=base.SDK_MAX_RETRIES,
            # No redirects: base_url's host is the one providers.egress allowed, not wherever it points.
            http_client=anthropic.DefaultHttpxClient(follow_redirects=False),
        )

    def list_model_ids(self) -> set[str]:
        try:
            with self.client() as client:
                # The SDK's page iterator follows has_more / last_id through every page.
                return {model.id for model in client.models.list(limit=100)}
        except anthropic.AnthropicError as exc:
            raise self._error(exc, "GET /v1/models") from exc

    def listed_alias(self, model_id: str, listed: set[str]) -> str | None:
        # Aliases such as "claude-opus-4-5" are not listed, but the API resolves them to a listed id.
        try:
            with self.client() as client:
                resolved = client.models.retrieve(model_id).id
        except anthropic.NotFoundError:
            return None
        except anthropic.AnthropicError as exc:
            raise self._error(exc, f"GET /v1/models/{model_id}") from exc
        return resolved if resolved in listed else None

    def probe(self, model_id: str) -> bool:
        try:
            with self.client() as client:
                client.messages.create(model=model_id, max_tokens=1, messages=[{"role": "user", "content": "ping"}])
        except anthropic.NotFoundError:
            return False
        except anthropic.AnthropicError as exc:
            raise self._error(exc, f"one-token probe of {model_id}") from exc
        return True

    def _error(self, exc: Exception, what: str) -> base.ProviderError:
        return base.sdk_error(anthropic, exc, what, self.timeout, base.known_secret(self.provider))
