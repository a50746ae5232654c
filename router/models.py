"""Routing policy (categories, routes, tiers, the policy version), decisions, usage and API keys."""

import uuid

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import connection, models
from django.db.models import Q
from rest_framework_api_key.models import AbstractAPIKey
from simple_history.models import HistoricalRecords

from providers.models import MODEL_KEY, LLMModel
from switchboard.validators import visible_text
from switchboard.vocabulary import COUNTED_OUTCOMES, FAILURE_STATUSES, Complexity, Outcome, UsageStatus


class Category(models.Model):
    """A task category; `fallback: never` categories fail fast instead of downgrading."""

    class Fallback(models.TextChoices):
        ALLOW = "allow"
        NEVER = "never"

    slug = models.SlugField(max_length=64, unique=True)
    fallback = models.CharField(
        max_length=8, choices=Fallback.choices, default=Fallback.ALLOW,
        help_text="allow: a passed-over primary falls back along its route. never: the request is refused instead "
                  "(failed_fast), so critical work is never silently downgraded.")
    may_use_headroom = models.BooleanField(
        default=False,
        help_text="May keep using its primary between the soft and the hard limit (headroom reserved for critical work).",
    )
    description = models.TextField(blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.slug


# A task may not be refused for its attempts before it could escalate.
ATTEMPTS_IN_ORDER = Q(max_attempts__isnull=True) | Q(escalate_after__isnull=True) | Q(max_attempts__gte=models.F("escalate_after"))
ATTEMPTS_OUT_OF_ORDER = "max_attempts must be at least escalate_after."


class ModelChain(models.Model):
    """What routes and tiers share: ordered models (`entries`), the first the primary, the rest the fallback chain;
    and, for a task that keeps failing, an escalation list (`escalation`) and a limit on its attempts."""

    escalate_after = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Attempts of a task after which it walks the escalation list instead (and may use the headroom above soft limits).",
    )
    max_attempts = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Attempts of a task beyond this are refused (429 attempts_exhausted). Empty: no limit.",
    )

    class Meta:
        abstract = True

    def model_keys(self) -> list[str]:
        return [entry.model.key for entry in self.entries.select_related("model").order_by("position")]

    def escalation_keys(self) -> list[str]:
        return [entry.model.key for entry in self.escalation.select_related("model").order_by("position")]


class ChainEntry(models.Model):
    """One model in a route's or tier's ordered list."""

    position = models.PositiveSmallIntegerField(default=0, db_index=True)

    class Meta:
        abstract = True
        ordering = ["position"]

    def __str__(self) -> str:
        owner = self.route if hasattr(self, "route_id") else self.tier
        return f"{owner._meta.verbose_name} {owner}: {self.model.key}"


class Route(ModelChain):
    """(category, complexity) -> ordered models: the first is the primary, the rest the fallback chain."""

    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="routes")
    complexity = models.CharField(max_length=8, choices=Complexity.choices, default=Complexity.ANY,
                                  help_text="The requests' complexity this route serves; 'any' serves each complexity without a route of its own.")

    history = HistoricalRecords()

    class Meta:
        ordering = ["category__slug", "complexity"]
        constraints = [
            models.UniqueConstraint(fields=["category", "complexity"], name="route_unique_category_complexity"),
            models.CheckConstraint(condition=ATTEMPTS_IN_ORDER, name="route_max_attempts_not_below_escalate_after",
                                   violation_error_message=ATTEMPTS_OUT_OF_ORDER),
        ]

    def __str__(self) -> str:
        return f"{self.category.slug}/{self.complexity}"


class RouteModel(ChainEntry):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="entries")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="route_entries")

    history = HistoricalRecords()

    class Meta(ChainEntry.Meta):
        verbose_name = "route model"
        constraints = [models.UniqueConstraint(fields=["route", "model"], name="route_model_distinct",
                                               violation_error_message="A model can appear only once in a route.")]


class Tier(ModelChain):
    """A name services can ask for instead of a category (cheap, medium, quality, …)."""

    slug = models.SlugField(max_length=64, unique=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]
        constraints = [models.CheckConstraint(condition=ATTEMPTS_IN_ORDER, name="tier_max_attempts_not_below_escalate_after",
                                              violation_error_message=ATTEMPTS_OUT_OF_ORDER)]

    def __str__(self) -> str:
        return self.slug


class TierModel(ChainEntry):
    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="entries")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="tier_entries")

    history = HistoricalRecords()

    class Meta(ChainEntry.Meta):
        verbose_name = "tier model"
        constraints = [models.UniqueConstraint(fields=["tier", "model"], name="tier_model_distinct",
                                               violation_error_message="A model can appear only once in a tier.")]


class RouteEscalation(ChainEntry):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="escalation")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="route_escalations")

    history = HistoricalRecords()

    class Meta(ChainEntry.Meta):
        verbose_name = "route escalation model"
        constraints = [models.UniqueConstraint(fields=["route", "model"], name="route_escalation_distinct",
                                               violation_error_message="A model can appear only once in an escalation list.")]


class TierEscalation(ChainEntry):
    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="escalation")
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="tier_escalations")

    history = HistoricalRecords()

    class Meta(ChainEntry.Meta):
        verbose_name = "tier escalation model"
        constraints = [models.UniqueConstraint(fields=["tier", "model"], name="tier_escalation_distinct",
                                               violation_error_message="A model can appear only once in an escalation list.")]


class Policy(models.Model):
    """The one policy row: its version (bumped by every policy edit) and the default tier."""

    version = models.PositiveBigIntegerField(default=1, editable=False)
    default_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                     help_text="Used when a request names neither category nor tier.")
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["version", "updated_at"])

    class Meta:
        verbose_name_plural = "policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="policy_singleton")]

    def __str__(self) -> str:
        return f"policy v{self.version}"

    @classmethod
    def current(cls) -> "Policy":
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy


class PolicyVersion(models.Model):
    """One change of the policy, from any source (the admin, PUT /api/v1/policy, import_policy, a rollback):
    who made it, when, from where and why, what it changed, and the whole policy as it stood after it.

    `number` is the policy version the change left (decisions name it as their `policy_version`); versions
    the availability refresh bumps change no policy document and have no row here.
    """

    class Source(models.TextChoices):
        ADMIN = "admin"
        API = "api", "PUT /api/v1/policy"
        COMMAND = "command", "import_policy"
        ROLLBACK = "rollback"
        BASELINE = "baseline", "the policy as it stood when its history began"

    number = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    author = models.CharField(max_length=200, help_text="The user, API key or command that made the change.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=16, choices=Source.choices)
    comment = models.CharField(max_length=500, blank=True)
    changes = models.JSONField(default=list, help_text="What changed, as import_policy --plan lists it.")
    document = models.JSONField(help_text="The whole policy after the change, in the policy file format.")

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"version {self.number}"


class Installation(models.Model):
    """This database's identity. Every Redis key its processes keep carries it, so that two installations
    (or a database recreated next to an old Redis) sharing one Redis never read, count or drain each other's."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="installation_singleton")]

    def __str__(self) -> str:
        return f"installation {self.uuid}"

    @classmethod
    def current(cls) -> "Installation":
        installation, _ = cls.objects.get_or_create(pk=1)
        return installation


# Counted decisions whose usage no report has replaced: they hold their reservation until their window moves on.
UNREPORTED = Q(reported=False, outcome__in=list(COUNTED_OUTCOMES))


class Decision(models.Model):
    """One routing answer, with the trace of every candidate considered.

    A counted decision is also the usage ledger's entry for its request: it holds the estimate it
    reserved, replaced by the actual tokens when a usage report names it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    caller = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=64, blank=True)
    complexity = models.CharField(max_length=8, blank=True)
    tier = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    model_key = models.CharField(max_length=100, blank=True)
    provider_slug = models.CharField(max_length=64, blank=True)
    primary_key = models.CharField(max_length=100, blank=True)
    reason = models.TextField(blank=True)
    trace = models.JSONField(default=list)
    policy_version = models.PositiveBigIntegerField()
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_input_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    counted_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's tokens-per-minute limiter counts of the call.")
    counted_input_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's input-tokens limiter counts.")
    counted_output_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's output-tokens limiter counts.")
    reported = models.BooleanField(default=False, help_text="A usage report replaced the estimate with actual usage.")
    answered_by = models.CharField(max_length=100, blank=True, help_text="The model that answered, when it was not the one chosen.")
    # The default is the database's too: the ledger's drain inserts decisions in SQL.
    requests = models.PositiveSmallIntegerField(default=1, db_default=1,
                                                help_text="The requests it counts: 1, or 0 once its call was reported not sent.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["outcome", "-created_at"]),
            models.Index(fields=["model_key", "created_at"]),
            models.Index(fields=["category", "-created_at"]),
            # The overview's decisions left unreported: few, whatever the history holds.
            models.Index(fields=["created_at"], condition=UNREPORTED, name="decision_unreported"),
            # The tuning's fallbacks: read through this small index even when the statistics lag behind a burst of primaries.
            models.Index(fields=["created_at"], condition=Q(outcome=Outcome.FALLBACK), name="decision_fallbacks"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.outcome} {self.model_key or '-'}"

    def insert(self) -> None:
        """Store this new decision with one plain INSERT.

        This is the routing hot path's only write; it skips Model.save()'s per-call machinery, which
        costs about twice as much CPU (nothing listens to a decision's save signals).
        """
        fields = self._meta.concrete_fields
        if not hasattr(Decision, "_insert_sql"):
            quote = connection.ops.quote_name
            Decision._insert_sql = (
                f"INSERT INTO {quote(self._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
                f"VALUES ({', '.join(['%s'] * len(fields))})"
            )
        with connection.cursor() as cursor:
            cursor.execute(Decision._insert_sql, [f.get_db_prep_save(getattr(self, f.attname), connection) for f in fields])


# The usage reports a model's cooldown is computed from (failures, and any with a retry-after), and
# those its rate-limit state is read from (router.counters.database.DatabaseCounters.model_reports).
FAILURE_OR_RETRY = Q(status__in=list(FAILURE_STATUSES)) | Q(retry_after__isnull=False)
WITH_RATELIMIT_HEADERS = ~Q(ratelimit_headers={})


class UsageEvent(models.Model):
    """What one LLM call used, as reported by the service that made it."""

    # Chosen when the report is accepted, which may be before the row is written (router.ledger).
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    caller = models.CharField(max_length=100, blank=True)
    model_key = models.CharField(max_length=100, validators=[MODEL_KEY])
    provider_slug = models.CharField(max_length=64)
    # Not a foreign key in the database: a partitioned router_decision (router.partitions) has no unique
    # index on id alone to reference. A report made after midnight for a decision of the day before
    # outlives it by up to a day once that day is dropped.
    decision = models.ForeignKey(Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_events",
                                 db_constraint=False)
    input_tokens = models.PositiveBigIntegerField(default=0, help_text="Uncached input tokens.")
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_input_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)
    counted_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's tokens-per-minute limiter counts of the call.")
    counted_input_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's input-tokens limiter counts.")
    counted_output_tokens = models.PositiveBigIntegerField(default=0, help_text="What the provider's output-tokens limiter counts.")
    status = models.CharField(max_length=16, choices=UsageStatus.choices, default=UsageStatus.OK)
    # Unique on SQLite; on PostgreSQL a partitioned table cannot hold a unique index without its
    # partition key, and the ledger's drain checks earlier reports instead (router.ledger).
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    ratelimit_headers = models.JSONField(default=dict, blank=True)
    answered_instead = models.BooleanField(
        default=False, help_text="Another model than the decision's answered: this report counts on its own against its model.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["model_key", "created_at"]),
            # Without these, every decision on the database counters would read the last hour of each
            # model's reports to find the few that state a failure or a rate limit.
            models.Index(fields=["model_key", "created_at"], condition=FAILURE_OR_RETRY, name="usage_event_failures"),
            models.Index(fields=["model_key", "created_at"], condition=WITH_RATELIMIT_HEADERS, name="usage_event_ratelimits"),
        ]

    def __str__(self) -> str:
        return f"{self.model_key} {self.status} {self.input_tokens}+{self.output_tokens}"


class LedgerSums(models.Model):
    """The ledger summed per period, outcome and model (LedgerMinute, LedgerHour).

    Database triggers keep them (migration 0010): every insert, update and delete of a decision, and of
    a usage report that counts on its own (it names no decision, or another model answered; outcome
    "reported"), adds to or takes from its period's row in the same statement, whatever wrote it (the
    ledger's drain, the database counters, the admin). A report that names a decision changes that
    decision's numbers, and so its rows here. Pruning the ledger (router.retention) takes nothing away.
    """

    REPORTED = "reported"

    outcome = models.CharField(max_length=24)
    model_key = models.CharField(max_length=100)
    provider_slug = models.CharField(max_length=64)
    entries = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_input_tokens = models.BigIntegerField(default=0)
    cache_write_input_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=6, default=0)
    counted_tokens = models.BigIntegerField(default=0)
    counted_input_tokens = models.BigIntegerField(default=0)
    counted_output_tokens = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class LedgerMinute(LedgerSums):
    """Per minute: what the dashboard's volume chart, the burn-rate forecast and the database counters
    read, so that their cost follows the minutes they cover, not the traffic. Kept for the longest
    quota window and a day (router.retention)."""

    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "outcome", "model_key", "provider_slug"], name="ledger_minute_unique")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.outcome} {self.model_key or '-'}: {self.entries}"


class LedgerHour(LedgerSums):
    """Per hour: the whole hours of a long window on the database counters, and the history kept after
    the ledger's rows and minutes are pruned."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "outcome", "model_key", "provider_slug"], name="ledger_hour_unique")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.outcome} {self.model_key or '-'}: {self.entries}"


class LedgerPruning(models.Model):
    """A row here exists only inside a pruning transaction (router.retention): while it does, the
    triggers that keep the sums leave that transaction's deletions out, so pruning takes nothing away."""

    started_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pruning since {self.started_at:%Y-%m-%d %H:%M:%S}"


class ApiKey(AbstractAPIKey):
    """A service's key: stored hashed (SHA-512), shown once, scoped, revocable."""

    name = models.CharField(max_length=50, validators=[visible_text],
                            help_text="Who uses the key, e.g. the service's name; it is the caller in the audit.")
    scopes = models.JSONField(default=list, help_text="Any of: route, usage, read, admin.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
