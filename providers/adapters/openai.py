"""OpenAI and OpenAI-compatible APIs: list the models the key can see; optionally probe with one token."""

import openai

from providers.adapters import base


class OpenAIAdapter(base.ListingAdapter):
    """The OpenAI API or a compatible vendor's, through the official SDK. `base_url` ends in '/v1'."""

    def client(self) -> openai.OpenAI:
        options = {"base_url": self.provider.base_url} if self.provider.base_url else {}
        # No redirects: base_url's host is the one providers.egress allowed, not wherever it points.
        return openai.OpenAI(api_key=self.api_key(), timeout=self.timeout, max_retries=base.SDK_MAX_RETRIES,
                             http_client=openai.DefaultHttpxClient(follow_redirects=False), **options)

    def list_model_ids(self) -> set[str]:
        try:
            with self.client() as client:
                return {model.id for model in client.models.list()}
        except openai.OpenAIError as exc:
            raise self._error(exc, "GET /models") from exc

    def probe(self, model_id: str) -> bool:
        try:
            with self.client() as client:
                client.chat.completions.create(model=model_id, max_tokens=1, messages=[{"role": "user", "content": "ping"}])
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:
            raise self._error(exc, f"one-token probe of {model_id}") from exc
        return True

    def _error(self, exc: Exception, what: str) -> base.ProviderError:
        return base.sdk_error(openai, exc, what, self.timeout, base.known_secret(self.provider))
