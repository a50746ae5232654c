"""Alert rules (part of the policy), the channels alerts go to, the alerts themselves and the messages sent."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from providers import secrets


class Severity(models.TextChoices):
    WARNING = "warning"
    CRITICAL = "critical"


class Condition(models.TextChoices):
    """What an alert rule watches; each is a function of alerts.conditions."""

    QUOTA_SOFT_LIMIT = "quota_soft_limit", "a quota over its soft limit"
    QUOTA_FORECAST = "quota_forecast", "a quota forecast to reach its hard limit within N minutes"
    REFUSAL_SHARE = "refusal_share", "refused routing requests above X % over 5 minutes"
    MODEL_OUT = "model_out", "a model cooling down, unavailable or not found"
    REFRESH_FAILING = "refresh_failing", "a provider's availability refresh failing for N minutes"
    LEDGER_BACKLOG = "ledger_backlog", "the ledger's backlog in Redis older than N seconds (the drain stopped)"
    COUNTING_ON_DATABASE = "counting_on_database", "counting moved off Redis (unreachable)"


# The parameters each condition reads; the policy file refuses the others on a rule of that condition.
PARAMETERS = {
    Condition.QUOTA_SOFT_LIMIT: (),
    Condition.QUOTA_FORECAST: ("within_minutes",),
    Condition.REFUSAL_SHARE: ("percent", "category", "min_decisions"),
    Condition.MODEL_OUT: (),
    Condition.REFRESH_FAILING: ("for_minutes",),
    Condition.LEDGER_BACKLOG: ("seconds",),
    Condition.COUNTING_ON_DATABASE: (),
}
# Parameters a rule of the condition must state (the others have a default).
REQUIRED_PARAMETERS = {"within_minutes", "percent", "for_minutes", "seconds"}


class AlertRule(models.Model):
    """One condition the worker evaluates every 30 s; a rule of the policy (the document's `alerts` list)."""

    slug = models.SlugField(max_length=64, unique=True)
    condition = models.CharField(max_length=32, choices=Condition.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    repeat_minutes = models.PositiveIntegerField(
        default=60, validators=[MaxValueValidator(10080)],
        help_text="While the condition holds, send it again at most this often (0: only when it starts and ends).")
    within_minutes = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(10080)],
                                                 help_text="quota_forecast: alert when the hard limit is forecast within this many minutes.")
    percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True,
                                  validators=[MinValueValidator(0), MaxValueValidator(100)],
                                  help_text="refusal_share: alert when more than this share of routing requests was refused over 5 minutes.")
    category = models.SlugField(max_length=64, blank=True,
                                help_text="refusal_share: only this category's requests (empty: every request).")
    min_decisions = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1)],
                                                help_text="refusal_share: fewer requests than this in 5 minutes never alert.")
    for_minutes = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(10080)],
                                              help_text="refresh_failing: alert when a provider's refresh has failed for this many minutes.")
    seconds = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(86400)],
                                          help_text="ledger_backlog: alert when the oldest row waiting in Redis is older than this.")
    description = models.TextField(blank=True, help_text="What the on-call should do; sent with the alert.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def policy_label(self) -> tuple[str, str]:
        """How the policy history and the admin's problems name this rule."""
        return "alert", self.slug


class AlertChannel(models.Model):
    """Where alerts are sent: a webhook (generic JSON, or a Slack/Teams `text` body) or email. Set in the admin;
    the webhook's URL and token are stored encrypted and never shown again."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "webhook (JSON)"
        SLACK = "slack", "webhook (Slack/Teams text)"
        EMAIL = "email"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING,
                                    help_text="Alerts below this severity are not sent here.")
    recipients = models.TextField(blank=True, help_text="Email: addresses, comma-separated.")
    # Fernet tokens; write-only: set through set_url() and set_token(), never rendered anywhere.
    encrypted_url = models.TextField(blank=True, editable=False)
    encrypted_token = models.TextField(blank=True, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_url(self) -> bool:
        return bool(self.encrypted_url)

    @property
    def has_token(self) -> bool:
        return bool(self.encrypted_token)

    def set_url(self, value: str) -> None:
        self.encrypted_url = secrets.encrypt(value) if value else ""

    def set_token(self, value: str) -> None:
        self.encrypted_token = secrets.encrypt(value) if value else ""

    def url(self) -> str:
        return secrets.decrypt(self.encrypted_url) if self.encrypted_url else ""

    def token(self) -> str:
        return secrets.decrypt(self.encrypted_token) if self.encrypted_token else ""

    def address_list(self) -> list[str]:
        return [address.strip() for address in self.recipients.split(",") if address.strip()]

    def takes(self, severity: str) -> bool:
        return self.enabled and (self.min_severity == Severity.WARNING or severity == Severity.CRITICAL)


class Alert(models.Model):
    """One condition of one rule about one subject (a quota, a model, a provider...), from when it started to when it ended."""

    rule = models.ForeignKey(AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    rule_slug = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    subject = models.CharField(max_length=200, blank=True)
    summary = models.TextField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    last_sent_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["rule_slug", "subject"], condition=Q(resolved_at=None), name="alerts_one_open_per_subject")]
        indexes = [models.Index(fields=["resolved_at", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.rule_slug} {self.subject}".strip()


class AlertEvent(models.Model):
    """An alert firing, sent again while it holds, or resolved: what each message said, kept for the alerts page."""

    class Kind(models.TextChoices):
        FIRING = "firing"
        REPEATED = "repeated"
        RESOLVED = "resolved"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(db_index=True)
    summary = models.TextField()

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.alert}"


class Notification(models.Model):
    """One message to one channel, grouping every event of one evaluation; retried with backoff until sent or given up."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "failed (gave up)"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="notifications")
    events = models.ManyToManyField(AlertEvent, related_name="notifications")
    created_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"to {self.channel} at {self.created_at:%Y-%m-%d %H:%M:%S} ({self.status})"


class Evaluation(models.Model):
    """The one row the evaluator locks while it runs (two workers never evaluate at once), and when it last ran."""

    evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"alerts evaluated at {self.evaluated_at}"

    @classmethod
    def locked(cls) -> "Evaluation":
        cls.objects.get_or_create(pk=1)
        return cls.objects.select_for_update().get(pk=1)
