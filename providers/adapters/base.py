"""The interface every provider adapter implements, and the plain values it reports.

An adapter asks one provider what the account can use and answers, per model id, with a
`ModelAccess`. It raises `ProviderError` when the provider cannot be asked at all (an HTTP error,
a timeout, a refused connection): the caller then leaves availability as it was.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

from providers.egress import EgressRefused, check_credential_env, check_resolved
from providers.models import LLMModel, Provider
from switchboard.vocabulary import Availability

AVAILABLE = Availability.AVAILABLE.value
UNAVAILABLE = Availability.UNAVAILABLE.value
UNKNOWN = Availability.UNKNOWN.value

# Retries of a transient failure per SDK call. Kept low: a refresh runs again in minutes, and a
# provider that is down should not hold a worker for long. Tests set it to 0.
SDK_MAX_RETRIES = 1

MAX_ERROR_LENGTH = 500


class ProviderError(Exception):
    """A provider API call failed. The message says what failed and never contains a credential."""


@dataclass(frozen=True)
class ModelAccess:
    """What one check found out about one model. An empty `invoke_id` leaves the stored one as it is; `probed`: a
    one-token call answered, which alone brings back a model a real call reported not found."""

    availability: str
    reason: str
    invoke_id: str = ""
    probed: bool = False


@dataclass
class AccessReport:
    """An adapter's answer: access per model id, and the errors that left some models unanswered."""

    models: dict[str, ModelAccess] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Adapter(ABC):
    """One provider's API, asked with the provider's own credentials, base URL and timeout."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.timeout = float(provider.request_timeout_seconds)

    @abstractmethod
    def check(self, models: Sequence[LLMModel]) -> AccessReport:
        """What the account can use, per model id; raises ProviderError when the provider cannot be asked."""

    @abstractmethod
    def probe(self, model_id: str) -> bool:
        """Sends a one-token request: True if answered, False if the model is not found; raises ProviderError otherwise."""

    def confirm(self, model: LLMModel, access: ModelAccess) -> ModelAccess:
        """What a check found, for a model a real call reported not found: only a one-token probe brings it back."""
        if model.not_found_at is None or access.availability != AVAILABLE or access.probed:
            return access
        if not model.enabled:
            return ModelAccess(UNAVAILABLE, model.availability_reason)
        invoke_id = access.invoke_id or model.effective_invoke_id
        if self.probe(invoke_id):
            return ModelAccess(AVAILABLE, f"answered a one-token probe after a call reported it not found ({access.reason})",
                               access.invoke_id, probed=True)
        return ModelAccess(UNAVAILABLE, "a call reported it not found, and so did a one-token probe")

    def api_key(self) -> str:
        """The credential, once the provider's credential_env and base_url (as it resolves now) are allowed to carry it."""
        for name, check, value in (("credential_env", check_credential_env, self.provider.credential_env),
                                   ("base_url", check_resolved, self.provider.base_url)):
            try:
                check(value)
            except EgressRefused as exc:
                raise ProviderError(f"credential not sent: {name} {value!r}: {exc}") from exc
        try:
            key = self.provider.api_key()
        except ValueError as exc:  # a stored secret that cannot be decrypted
            raise ProviderError(str(exc)) from exc
        if not key:
            raise ProviderError(
                f"no API key: set credential_env (an environment variable holding the key) or store a secret for provider {self.provider.slug}"
            )
        return key


class ListingAdapter(Adapter):
    """APIs with a models list (Anthropic, OpenAI and compatibles): listed means available.

    A model the listing does not name is, when the provider has `probe_models` on and the model
    is enabled, confirmed with a one-token request: an answer makes it available, a 404 unavailable.
    """

    @abstractmethod
    def list_model_ids(self) -> set[str]:
        """The ids the provider's models API lists for this key, every page."""

    def listed_alias(self, model_id: str, listed: set[str]) -> str | None:
        """The listed model that `model_id` is an alias of, where the API resolves aliases."""
        return None

    def check(self, models: Sequence[LLMModel]) -> AccessReport:
        listed = self.list_model_ids()
        report = AccessReport()
        for model in models:
            try:
                report.models[model.model_id] = self.confirm(model, self._access(model, listed))
            except ProviderError as exc:
                report.errors.append(f"{model.key}: {exc}")
        return report

    def _access(self, model: LLMModel, listed: set[str]) -> ModelAccess:
        model_id = model.model_id
        if model_id in listed:
            return ModelAccess(AVAILABLE, "listed by the provider's models API", model_id)
        alias_of = self.listed_alias(model_id, listed)
        if alias_of:
            return ModelAccess(AVAILABLE, f"alias of {alias_of}, listed by the provider's models API", model_id)
        if not (self.provider.probe_models and model.enabled):
            return ModelAccess(UNAVAILABLE, "not listed by the provider's models API for this key")
        if self.probe(model_id):
            return ModelAccess(AVAILABLE, "answered a one-token probe", model_id, probed=True)
        return ModelAccess(UNAVAILABLE, "not available to this key (404 on a one-token probe)")


def known_secret(provider: Provider) -> str:
    """The provider's API key if it can be read, for redacting it from error texts."""
    try:
        return provider.api_key()
    except ValueError:
        return ""


def redact(text: str, *secrets: str) -> str:
    """The text with every given secret replaced, cut to a length fit for a log line or the admin."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text


def http_error_text(status: int, body: object, fallback: str) -> str:
    """'HTTP 401: <the provider's message>' from an SDK status error's parsed body."""
    message = fallback
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            message = inner["message"]
    return f"HTTP {status}: {message}"


def sdk_error(sdk: ModuleType, exc: Exception, what: str, timeout: float, secret: str) -> ProviderError:
    """A ProviderError for an exception of the anthropic or openai SDK (they share one error model)."""
    if isinstance(exc, sdk.APITimeoutError):
        text = f"timed out after {timeout:g}s"
    elif isinstance(exc, sdk.APIConnectionError):
        text = f"could not connect: {exc.__cause__ or exc}"
    elif isinstance(exc, sdk.APIStatusError):
        text = http_error_text(exc.status_code, exc.body, exc.message)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return ProviderError(redact(f"{what}: {text}", secret))
