"""Providers, the models they serve, their quotas, and the record of availability checks."""

import os
import time
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from providers import secrets
from providers.burndown import MAX_BURNDOWN_RATE, default_burndown_rate
from switchboard.validators import visible_text
from switchboard.vocabulary import WINDOW_SECONDS, Availability, Metric, ProviderKind, Reset, Window

# \A and \Z, not ^ and $: "$" also matches before a trailing newline, which would let "d1\n" in beside "d1".
ENV_VAR_NAME = RegexValidator(r"\A[A-Za-z_][A-Za-z0-9_]*\Z", "Enter an environment variable name, e.g. OPENAI_API_KEY.")
MODEL_KEY = RegexValidator(
    r"\A[A-Za-z0-9][A-Za-z0-9._:-]*\Z",
    "Use letters, digits, '.', '_', ':' and '-', starting with a letter or digit.",
)


class Provider(models.Model):
    """An account at an LLM vendor: how to reach it and with which credentials."""

    slug = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(blank=True, help_text="Handed to the SDK as is: '…/v1' for OpenAI-style APIs, the bare host for Anthropic.")
    region = models.CharField(max_length=32, blank=True, validators=[visible_text], help_text="AWS region (Bedrock only).")
    aws_profile = models.CharField(max_length=64, blank=True, validators=[visible_text],
                                   help_text="Named AWS profile (Bedrock only); empty uses the standard credential chain.")
    credential_env = models.CharField(
        max_length=128, blank=True, validators=[ENV_VAR_NAME],
        help_text="Name of the environment variable holding the API key.",
    )
    # Fernet token; write-only: set through set_secret(), never rendered anywhere.
    encrypted_secret = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    allow_global_profile = models.BooleanField(
        default=False, help_text="Bedrock: may fall back to a global.* inference profile when no regional one exists.",
    )
    probe_models = models.BooleanField(
        default=False, help_text="Confirm access to each model with a one-token request where listing does not prove it.",
    )
    request_timeout_seconds = models.PositiveSmallIntegerField(default=10, validators=[MinValueValidator(1)])
    cooldown_failures = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Failures within the window that put a model in cooldown.",
    )
    cooldown_window_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])
    cooldown_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)])
    max_retry_after_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(1), MaxValueValidator(3600)],
        help_text="The longest a usage report's retry_after holds a model back (at most an hour): a key that "
                  "reports a day takes a model out for this long at most.",
    )
    # Set while an availability refresh runs, so that a second one is not started.
    refreshing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["encrypted_secret", "refreshing_since", "updated_at"])

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="bedrock") | ~Q(region=""), name="provider_bedrock_needs_region",
                violation_error_message="A Bedrock provider needs a region.",
            ),
            models.CheckConstraint(
                condition=~Q(kind="openai_compatible") | ~Q(base_url=""), name="provider_compatible_needs_base_url",
                violation_error_message="An OpenAI-compatible provider needs a base URL.",
            ),
            models.CheckConstraint(condition=Q(cooldown_failures__gte=1), name="provider_cooldown_failures_positive"),
            models.CheckConstraint(condition=Q(cooldown_window_seconds__gte=1), name="provider_cooldown_window_positive"),
            models.CheckConstraint(condition=Q(cooldown_seconds__gte=1), name="provider_cooldown_seconds_positive"),
            models.CheckConstraint(condition=Q(max_retry_after_seconds__gte=1, max_retry_after_seconds__lte=3600),
                                   name="provider_max_retry_after_in_range"),
            models.CheckConstraint(condition=Q(request_timeout_seconds__gte=1), name="provider_timeout_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def has_secret(self) -> bool:
        return bool(self.encrypted_secret)

    def set_secret(self, value: str) -> None:
        self.encrypted_secret = secrets.encrypt(value) if value else ""

    def api_key(self) -> str:
        """The credential to hand to the SDK: the stored secret, else the named environment variable."""
        if self.encrypted_secret:
            return secrets.decrypt(self.encrypted_secret)
        if self.credential_env:
            return os.environ.get(self.credential_env, "")
        return ""


class LLMModel(models.Model):
    """A model at a provider, under the router-facing `key` services ask for."""

    key = models.CharField(max_length=100, unique=True, validators=[MODEL_KEY])
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    model_id = models.CharField(max_length=200, validators=[visible_text], help_text="The provider's id for the model.")
    invoke_id = models.CharField(
        max_length=200, blank=True,
        help_text="What services must send; resolved by the availability refresh (Bedrock inference profile). Empty means model_id.",
    )
    input_cost_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(0)])
    output_cost_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(0)])
    cache_read_cost_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Price of a million cache-read input tokens; empty: the input price.",
    )
    cache_write_cost_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Price of a million cache-write input tokens; empty: the input price.",
    )
    burndown_rate = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_BURNDOWN_RATE)],
        help_text="Bedrock: how many quota tokens one output token takes; empty: AWS's rate for the model (5 for Claude 4 and later, else 1).",
    )
    context_window = models.PositiveIntegerField(
        validators=[MinValueValidator(1)],
        help_text="Tokens of input and output together; a request whose estimate exceeds it passes this model over.")
    enabled = models.BooleanField(default=True, help_text="A disabled model is passed over by every route and tier that lists it.")
    availability = models.CharField(max_length=16, choices=Availability.choices, default=Availability.UNKNOWN)
    availability_reason = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Set when a real call reported the model not found: it stays unavailable, whatever a listing says, until a
    # one-token probe answers (providers.refresh) or a person clears it (clear_not_found).
    not_found_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(excluded_fields=["invoke_id", "availability", "availability_reason", "checked_at", "not_found_at"])

    class Meta:
        ordering = ["key"]
        verbose_name = "model"
        constraints = [
            models.CheckConstraint(condition=Q(context_window__gte=1), name="model_context_window_positive"),
            models.CheckConstraint(condition=Q(input_cost_per_mtok__gte=0), name="model_input_cost_not_negative"),
            models.CheckConstraint(condition=Q(output_cost_per_mtok__gte=0), name="model_output_cost_not_negative"),
            models.CheckConstraint(condition=Q(burndown_rate__isnull=True) | Q(burndown_rate__gte=1, burndown_rate__lte=MAX_BURNDOWN_RATE),
                                   name="model_burndown_rate_in_range", violation_error_message="The burndown rate must be from 1 to 100."),
            models.UniqueConstraint(fields=["provider", "model_id"], name="model_unique_model_id_per_provider"),
        ]
        indexes = [models.Index(fields=["checked_at"])]

    def __str__(self) -> str:
        return self.key

    @classmethod
    def clear_not_found(cls, keys: list[str], by: str) -> int:
        """Brings models a call reported not found back into routing (availability unknown until the next refresh);
        returns how many were cleared. Moving `checked_at` makes every process reload the policy snapshot."""
        now = timezone.now()
        return cls.objects.filter(key__in=keys, not_found_at__isnull=False).update(
            not_found_at=None, availability=Availability.UNKNOWN, checked_at=now,
            availability_reason=f"'not found' cleared by {by} at {now:%Y-%m-%d %H:%M:%S} UTC; waiting for the next availability refresh",
        )

    @property
    def effective_invoke_id(self) -> str:
        return self.invoke_id or self.model_id

    @property
    def effective_burndown_rate(self) -> int:
        return self.burndown_rate or default_burndown_rate(self.provider.kind, self.model_id)


class Quota(models.Model):
    """A limit on a provider: provider-wide, or a pool that only the listed models draw on."""

    class Source(models.TextChoices):
        MANUAL = "manual"
        AWS = "aws", "AWS Service Quotas"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="quotas")
    name = models.CharField(max_length=100, validators=[MODEL_KEY])
    metric = models.CharField(max_length=16, choices=Metric.choices, help_text="What the quota counts, as the provider counts it.")
    window = models.CharField(max_length=8, choices=Window.choices)
    reset = models.CharField(max_length=8, choices=Reset.choices, default=Reset.ROLLING,
                             help_text="rolling: the last window up to now; calendar: the window restarts at 00:00 UTC (weeks on Monday).")
    limit = models.DecimalField(max_digits=20, decimal_places=6, validators=[MinValueValidator(Decimal("0.000001"))],
                                help_text="The hard limit: a request whose estimate would pass it is never given these models.")
    soft_limit_ratio = models.DecimalField(
        max_digits=4, decimal_places=3, default=Decimal("0.8"),
        help_text="Above limit × ratio the router falls back to the next model; only categories that may use the headroom, "
                  "and escalated tasks, go on up to the hard limit.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    quota_code = models.CharField(max_length=32, blank=True, help_text="AWS Service Quotas code, kept once matched.")
    # Declared last: from here on, `models` in this class body is the field, not django.db.models.
    models = models.ManyToManyField(LLMModel, blank=True, related_name="quotas", help_text="Empty: the quota covers every model of the provider.")

    history = HistoricalRecords(m2m_fields=[models])

    class Meta:
        ordering = ["provider__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="quota_unique_name_per_provider"),
            models.CheckConstraint(condition=Q(limit__gt=0), name="quota_limit_positive",
                                   violation_error_message="A quota's limit must be positive."),
            models.CheckConstraint(condition=Q(soft_limit_ratio__gt=0, soft_limit_ratio__lte=1), name="quota_soft_ratio_in_range",
                                   violation_error_message="The soft limit ratio must be above 0 and at most 1."),
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.name}"

    @property
    def window_seconds(self) -> int:
        return WINDOW_SECONDS[self.window]

    @property
    def soft_limit(self) -> Decimal:
        return self.limit * self.soft_limit_ratio

    def validate_pool(self, model_list) -> None:
        """A pool may only name models of its own provider."""
        foreign = sorted(m.key for m in model_list if m.provider_id != self.provider_id)
        if foreign:
            raise ValidationError({"models": f"Not models of provider {self.provider.slug}: {', '.join(foreign)}."})


class AvailabilityCheck(models.Model):
    """One run of the availability refresh or quota sync for one provider."""

    class Kind(models.TextChoices):
        AVAILABILITY = "availability"
        QUOTA_SYNC = "quota_sync", "quota sync"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="checks")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.AVAILABILITY)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    models_changed = models.PositiveIntegerField(default=0)
    changes = models.JSONField(default=list, blank=True, help_text="What changed, one entry per model or quota.")

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        indexes = [models.Index(fields=["provider", "kind", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.provider.slug} {self.kind} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def record(cls, provider: Provider, kind: str, *, started_at: datetime, started: float, error: str, changes: list[dict],
               models_changed: int) -> "AvailabilityCheck":
        """Store one run that began at `started_at` (`started`: time.monotonic() then) and failed with `error`, if any."""
        return cls.objects.create(
            provider=provider, kind=kind, started_at=started_at, duration_ms=round((time.monotonic() - started) * 1000),
            ok=not error, error=error, models_changed=models_changed, changes=changes,
        )


class RedisMark(models.Model):
    """What the ledger's drain last found in the Redis that holds an installation's counters: the mark it keeps
    there and when it had written out every row Redis had accepted; and the last period whose rows Redis lost
    (router.counters.marks). Kept in the database, because a Redis that lost its data cannot say so itself."""

    store = models.CharField(max_length=200, unique=True, help_text="The key prefix of the installation's Redis keys.")
    mark = models.CharField(max_length=64)
    drained_at = models.DateTimeField(help_text="Every row Redis accepted before this time was written to the database.")
    lost_from = models.DateTimeField(null=True, blank=True)
    lost_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Redis mark of {self.store}"
