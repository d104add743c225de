from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clients.channels import Channel
from clients.models import Operator
from providers.limits import request_time_limit
from providers.registry import BACKEND_CHOICES, BACKENDS, backend_class


class ProviderAccount(models.Model):
    """One account at one gateway: where to send, with which credentials, at what price."""

    operator = models.ForeignKey(
        Operator, on_delete=models.PROTECT, related_name="provider_accounts"
    )
    name = models.CharField(max_length=100)
    backend = models.CharField(max_length=32, choices=BACKEND_CHOICES)
    base_url = models.URLField(
        blank=True, help_text=_("Gateway root URL; empty for SMTP (host/port go in credentials).")
    )
    credentials = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Backend-specific secrets: login/password, token or api_key, SMTP settings."),
    )
    sender_names = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('Sender per channel, e.g. {"sms": "Shop", "viber": "Shop"}.'),
    )
    channels = models.JSONField(
        default=list, help_text=_('Channels it serves, e.g. ["viber", "sms"].')
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Backend options, e.g. the cascade gateway's flavour."),
    )
    max_batch = models.PositiveIntegerField(default=50, help_text=_("Recipients per request."))
    rate_limit_per_second = models.PositiveIntegerField(
        default=0, help_text=_("Messages per second across all workers; 0 means no limit.")
    )
    cost_per_part = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    currency = models.CharField(max_length=3, default="RUB")
    timeout_seconds = models.PositiveSmallIntegerField(default=10)
    callback_secrets = models.JSONField(
        default=list,
        blank=True,
        help_text=_(
            "Webhook secrets; the first signs new callback URLs, all are accepted (rotation)."
        ),
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["operator", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "name"], name="provider_account_name_unique"
            ),
            models.CheckConstraint(
                condition=Q(backend__in=list(BACKENDS)), name="provider_account_backend_known"
            ),
            models.CheckConstraint(
                condition=Q(max_batch__gte=1), name="provider_account_batch_positive"
            ),
            models.CheckConstraint(
                condition=Q(cost_per_part__gte=0), name="provider_account_cost_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1), name="provider_account_timeout_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_backend_display()})"

    def callback_url(self) -> str:
        """The URL a gateway should call back for this account (signed with its current secret)."""
        secrets = self.callback_secrets or []
        if not secrets:
            return ""
        base = settings.CASCADE_PUBLIC_URL.rstrip("/")
        return f"{base}/providers/webhooks/{self.backend}/{self.pk}/{secrets[0]}/"

    def replies_url(self) -> str:
        """Where a gateway that forwards clients' replies should post them."""
        url = self.callback_url()
        return f"{url}replies/" if url else ""

    def clean(self) -> None:
        errors = {}
        limit = request_time_limit()
        if self.timeout_seconds and self.timeout_seconds > limit:
            errors["timeout_seconds"] = _(
                "At most %(limit)g s: one request must end well within a claim's "
                "lease (CASCADE_CLAIM_LEASE_SECONDS) and the dispatcher's task "
                "(Q_TIMEOUT)."
            ) % {"limit": limit}
        if self.backend in BACKENDS:
            most = backend_class(self.backend).max_batch
            if self.max_batch and self.max_batch > most:
                errors["max_batch"] = _(
                    "At most %(most)s recipients per request: the most this gateway's "
                    "protocol takes."
                ) % {"most": most}
        if errors:
            raise ValidationError(errors)


class ChannelRoute(models.Model):
    """Which accounts serve a channel for an operator, tried in priority order (failover)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="channel_routes")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="routes")
    priority = models.PositiveSmallIntegerField(default=1, help_text=_("Lower is tried first."))
    cost_per_part = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("Price on this channel if it differs from the account's."),
    )

    class Meta:
        ordering = ["operator", "channel", "priority"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "channel", "priority"], name="route_priority_unique"
            ),
            models.UniqueConstraint(
                fields=["operator", "channel", "account"], name="route_account_unique"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="route_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(cost_per_part__isnull=True) | Q(cost_per_part__gte=0),
                name="route_cost_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.priority} → {self.account.name}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.account_id and self.operator_id and self.account.operator_id != self.operator_id:
            raise ValidationError({"account": _("The account belongs to another operator.")})
        if self.account_id and self.channel and self.channel not in self.account.channels:
            raise ValidationError(
                {
                    "channel": _("%(account)s does not serve %(channel)s.")
                    % {"account": self.account.name, "channel": self.channel}
                }
            )


class RateBucket(models.Model):
    """Token bucket of one account, shared by every worker through the database.

    Used when no Redis is configured; with REDIS_URL the bucket lives in Redis.
    """

    account = models.OneToOneField(
        ProviderAccount, primary_key=True, on_delete=models.CASCADE, related_name="rate_bucket"
    )
    tokens = models.FloatField(default=0)
    refreshed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.account_id}: {self.tokens:.1f} tokens"


class InboundCallback(models.Model):
    """A gateway callback taken in but not yet applied: the webhook's durable inbox.

    The webhook answers 200 once this row is committed, so a report is never
    lost after the gateway was told it arrived; applying it (locks, counters,
    the cascade) happens in batches, which is what lets the webhook take
    callbacks faster than one transaction each. A row that cannot be applied
    keeps its error and stays for a person to look at (dead letter).
    """

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    events = models.JSONField(help_text=_("The parsed status reports (providers.inbox.as_json)."))
    received_at = models.DateTimeField()
    error = models.TextField(blank=True, help_text=_("Why applying failed; such rows are skipped."))

    def __str__(self) -> str:
        return f"callback {self.pk} for account {self.account_id}"
