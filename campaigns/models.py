"""Templates, campaigns, messages and the deliveries that carry them.

A Message is one recipient of one campaign (or of one partner API call); each
Delivery is one step of its channel cascade; each DeliveryEvent one status
change with the gateway's raw payload.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from clients.channels import Channel, Purpose
from clients.models import ApiCredential, Client, Operator
from providers.models import ProviderAccount
from providers.status import DeliveryStatus

VIBER_TEXT_MAX = 1000
BUTTON_CAPTION_MAX = 19


class MessageTemplate(models.Model):
    """Per-channel content; text fields may use {{ variables }} rendered per recipient."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="templates")
    name = models.CharField(max_length=200)
    title = models.CharField(max_length=200, blank=True, help_text=_("Email subject, push title."))
    text = models.TextField(blank=True, help_text=_("Default text for every channel."))
    html = models.TextField(blank=True, help_text=_("Email body in HTML."))
    sms_text = models.TextField(blank=True, help_text=_("SMS text if it differs from the default."))
    viber_text = models.TextField(
        blank=True, help_text=format_lazy(_("At most {max} characters."), max=VIBER_TEXT_MAX)
    )
    button_caption = models.CharField(max_length=BUTTON_CAPTION_MAX, blank=True)
    button_url = models.URLField(blank=True)
    image_url = models.URLField(blank=True, help_text=_("Viber image; needs a button."))
    vk_template_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["operator", "name"], name="template_name_unique"),
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("viber_text"), VIBER_TEXT_MAX),
                name="template_viber_text_max",
            ),
            models.CheckConstraint(
                condition=Q(button_caption="", button_url="")
                | (~Q(button_caption="") & ~Q(button_url="")),
                name="template_button_needs_caption_and_url",
            ),
            models.CheckConstraint(
                condition=Q(image_url="") | ~Q(button_url=""), name="template_image_needs_button"
            ),
            models.CheckConstraint(
                condition=~Q(text="", html="", sms_text="", viber_text=""),
                name="template_has_content",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        DONE = "done", _("Done")
        CANCELLED = "cancelled", _("Cancelled")

    class AudienceKind(models.TextChoices):
        SEGMENT = "segment", _("Segment of clients")
        LIST = "list", _("Explicit list")

    class Source(models.TextChoices):
        PAGE = "page", _("Pages")
        ADMIN = "admin", _("Admin")
        API = "api", _("Partner API")

    class Kind(models.TextChoices):
        ONE_OFF = "one_off", _("One-off")
        TRIGGER = "trigger", _("Triggered")
        RECURRING = "recurring", _("Recurring")

    class Recurrence(models.TextChoices):
        DAILY = "daily", _("Every day")
        WEEKLY = "weekly", _("Every week")
        MONTHLY = "monthly", _("Every month")

    class Testing(models.TextChoices):
        NONE = "none", _("No variants")
        SPLIT = "split", _("Fixed split")
        WINNER = "winner", _("Test, then send the winner")

    class WinnerMetric(models.TextChoices):
        DELIVERED = "delivered", _("Delivery rate")
        READ = "read", _("Read rate")
        CLICK = "click", _("Click rate")

    class Trigger(models.TextChoices):
        REGISTRATION = "registration", _("Registration")
        BIRTHDAY = "birthday", _("Birthday")
        BONUS_EXPIRING = "bonus_expiring", _("Bonus points expiring")
        NO_PURCHASE = "no_purchase", _("No purchase for a while")
        PURCHASE = "purchase", _("After a purchase")
        ENTERED_SEGMENT = "entered_segment", _("Entered the segment")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.PROTECT, related_name="campaigns"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.PROMOTIONAL)
    channels = models.JSONField(
        default=list, help_text=_('The cascade in order, e.g. ["viber", "vk", "sms"].')
    )
    audience_kind = models.CharField(
        max_length=16, choices=AudienceKind.choices, default=AudienceKind.SEGMENT
    )
    segment = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('Segment filters, e.g. {"pos": [1], "bonus_min": 100, "tags": ["vip"]}.'),
    )
    scheduled_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Empty: start at launch.")
    )
    send_window_start = models.TimeField(null=True, blank=True)
    send_window_end = models.TimeField(null=True, blank=True)
    ttl_minutes = models.PositiveIntegerField(
        default=1440, help_text=_("How long each cascade step may wait for a final status.")
    )
    read_is_final = models.BooleanField(
        default=False, help_text=_("Delivered but unread falls through to the next channel.")
    )
    kind = models.CharField(
        _("kind"), max_length=16, choices=Kind.choices, default=Kind.ONE_OFF, db_default="one_off"
    )
    # A triggered campaign stays running until paused or cancelled; the sweeper evaluates
    # its trigger every TRIGGER_INTERVAL_SECONDS (campaigns/triggers.py).
    trigger = models.CharField(
        _("trigger"), max_length=20, choices=Trigger.choices, blank=True, db_default=""
    )
    trigger_delay_minutes = models.PositiveIntegerField(
        _("delay, minutes"),
        default=0,
        db_default=0,
        help_text=_("Registration and purchase triggers: how long after the event."),
    )
    trigger_days = models.PositiveIntegerField(
        _("days"),
        default=0,
        db_default=0,
        help_text=_(
            "Birthday: days before (0: on the day). Bonus expiring: within this many days. "
            "No purchase: for this many days."
        ),
    )
    trigger_local_hour = models.PositiveSmallIntegerField(
        _("local hour"),
        null=True,
        blank=True,
        help_text=_("Birthday: not before this hour in the client's time zone."),
    )
    triggers_checked_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The last pass of the trigger.")
    )
    # A recurring campaign never fans out itself: each run is a child one-off campaign
    # (parent = this) with its own fan-out and counters (campaigns/recurring.py).
    recurrence = models.CharField(
        _("repeats"), max_length=16, choices=Recurrence.choices, blank=True, db_default=""
    )
    recurrence_time = models.TimeField(_("run at (operator time)"), null=True, blank=True)
    recurrence_day = models.PositiveSmallIntegerField(
        _("day"),
        null=True,
        blank=True,
        help_text=_("Weekly: 0 Monday … 6 Sunday. Monthly: day of the month, 1-28."),
    )
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        verbose_name=_("recurring campaign"),
    )
    # Frequency caps: empty takes the operator's; 0 switches that cap off for this campaign.
    cap_per_day = models.PositiveSmallIntegerField(
        _("messages per client per channel a day"), null=True, blank=True
    )
    cap_per_week = models.PositiveSmallIntegerField(
        _("messages per client per channel a week"), null=True, blank=True
    )
    cap_min_gap_minutes = models.PositiveIntegerField(
        _("minimum gap between two messages (minutes)"), null=True, blank=True
    )
    # Experiments (campaigns/experiments.py): content variants and a control group.
    ab_mode = models.CharField(
        _("variant test"),
        max_length=16,
        choices=Testing.choices,
        default=Testing.NONE,
        db_default=Testing.NONE,
    )
    ab_test_percent = models.PositiveSmallIntegerField(
        _("test share (%)"),
        default=20,
        db_default=20,
        help_text=_("Test then winner: the share of the audience the variants are tried on."),
    )
    ab_wait_minutes = models.PositiveIntegerField(
        _("wait before picking the winner (minutes)"), default=240, db_default=240
    )
    ab_metric = models.CharField(
        _("winner by"),
        max_length=16,
        choices=WinnerMetric.choices,
        default=WinnerMetric.CLICK,
        db_default=WinnerMetric.CLICK,
    )
    ab_winner = models.ForeignKey(
        "CampaignVariant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("winner"),
    )
    ab_decided_at = models.DateTimeField(_("winner picked at"), null=True, blank=True)
    ab_reason = models.TextField(_("why it won"), blank=True, default="", db_default="")
    holdout_percent = models.PositiveSmallIntegerField(
        _("control group (%)"),
        default=0,
        db_default=0,
        help_text=_("A share of the audience that gets nothing, to measure the uplift against."),
    )
    track_links = models.BooleanField(
        _("track links"),
        default=False,
        db_default=False,
        help_text=_("Send the template's URLs as short links on our host and count the clicks."),
    )
    holdout_days = models.PositiveSmallIntegerField(
        _("days to measure purchases over"), default=7, db_default=7
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PAGE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_credential = models.ForeignKey(
        ApiCredential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When every recipient had its first delivery.")
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    state__in=["draft", "scheduled", "running", "paused", "done", "cancelled"]
                ),
                name="campaign_state_valid",
            ),
            models.CheckConstraint(condition=Q(ttl_minutes__gte=1), name="campaign_ttl_positive"),
            models.CheckConstraint(
                condition=Q(send_window_start__isnull=True, send_window_end__isnull=True)
                | Q(send_window_start__isnull=False, send_window_end__isnull=False),
                name="campaign_send_window_complete",
            ),
            models.CheckConstraint(
                condition=Q(kind="one_off", trigger="")
                | Q(
                    kind="trigger",
                    trigger__in=[
                        "registration",
                        "birthday",
                        "bonus_expiring",
                        "no_purchase",
                        "purchase",
                        "entered_segment",
                    ],
                )
                | Q(kind="recurring", trigger=""),
                name="campaign_trigger_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind="recurring", recurrence__in=["daily", "weekly", "monthly"])
                | (~Q(kind="recurring") & Q(recurrence="")),
                name="campaign_recurrence_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(trigger_local_hour__isnull=True) | Q(trigger_local_hour__lte=23),
                name="campaign_trigger_local_hour_valid",
            ),
            models.CheckConstraint(
                condition=Q(ab_test_percent__gte=1, ab_test_percent__lte=100)
                & Q(holdout_percent__lte=50),
                name="campaign_experiment_shares_valid",
            ),
        ]
        indexes = [models.Index(fields=["operator", "state"], name="campaign_operator_state")]

    def __str__(self) -> str:
        return self.name

    @property
    def has_experiment(self) -> bool:
        return self.ab_mode != self.Testing.NONE or self.holdout_percent > 0


VARIANT_LABELS = "ABCDEFGH"


class CampaignVariant(models.Model):
    """One content variant of a campaign: its own template (texts for every channel)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(_("variant"), max_length=1)
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.PROTECT, related_name="+", verbose_name=_("template")
    )
    weight = models.PositiveSmallIntegerField(
        _("share (%)"), default=50, help_text=_("Fixed split: this variant's share of the sends.")
    )

    class Meta:
        ordering = ["campaign", "label"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "label"], name="variant_label_unique"),
            models.CheckConstraint(
                condition=Q(label__in=list(VARIANT_LABELS)), name="variant_label_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.label


class TriggerMembership(models.Model):
    """A client who matches an `entered_segment` campaign's segment; the row is its entry.

    Unique per campaign and client: a pass inserts the newcomers and messages only those,
    and a client who leaves the segment loses the row, so re-entering fires again.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="memberships")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "client"], name="trigger_membership_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} in {self.campaign_id}"


class AudienceListEntry(models.Model):
    """One row of an explicit audience (an uploaded list, or LCManager's CardPhoneClientList)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="list_entries")
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    phone = models.CharField(max_length=15, blank=True)
    card_number = models.BigIntegerField(null=True, blank=True)
    variables = models.JSONField(
        default=dict, blank=True, help_text=_('Per-row values, e.g. {"Bonus": 150}.')
    )

    class Meta:
        verbose_name_plural = _("audience list entries")
        constraints = [
            models.CheckConstraint(
                condition=Q(client__isnull=False) | ~Q(phone="") | Q(card_number__isnull=False),
                name="list_entry_identifies_someone",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_id or self.phone or self.card_number}"


class Message(models.Model):
    """One recipient of one campaign or partner call; its id is the API's MessageId."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        IN_PROGRESS = "in_progress", _("In progress")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")
        CANCELLED = "cancelled", _("Cancelled")
        HOLDOUT = "holdout", _("Control group")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="messages")
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    recipient_key = models.CharField(
        max_length=100, help_text=_("Who this is for, unique within a campaign (e.g. client:42).")
    )
    phone = models.CharField(max_length=15, blank=True)
    email = models.EmailField(blank=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.PROMOTIONAL)
    title = models.CharField(
        max_length=200, blank=True, help_text=_("Content of a one-off message.")
    )
    text = models.TextField(blank=True)
    variables = models.JSONField(default=dict, blank=True)
    template = models.ForeignKey(
        MessageTemplate,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("A one-off message's template (a campaign's messages use the campaign's)."),
    )
    attachments = models.JSONField(
        default=list,
        db_default=[],  # fan-out inserts messages in raw SQL that does not name this column
        blank=True,
        help_text=_("Partner API Files: Id, Url, Type, Name, LevelStep."),
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    variant = models.ForeignKey(
        CampaignVariant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_credential = models.ForeignKey(
        ApiCredential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "recipient_key"],
                condition=Q(campaign__isnull=False),
                name="message_recipient_unique_per_campaign",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "pending",
                        "in_progress",
                        "delivered",
                        "read",
                        "failed",
                        "skipped",
                        "cancelled",
                        "holdout",
                    ]
                ),
                name="message_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="message_campaign_status"),
            models.Index(fields=["operator", "phone"], name="message_operator_phone"),
        ]

    def __str__(self) -> str:
        return f"message {self.pk}"


class Delivery(models.Model):
    """One cascade step of a message: one channel through one provider account."""

    # Every index is rewritten on each status change (claim, result, report), so
    # the foreign keys whose lookups a composite index already serves have none.
    operator = models.ForeignKey(
        Operator, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    campaign = models.ForeignKey(
        Campaign,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,
        help_text=_("Copied from the message so campaign counters need no join."),
    )
    step = models.PositiveSmallIntegerField(
        default=0, help_text=_("Position in the cascade, from 0.")
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    account = models.ForeignKey(
        ProviderAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
        db_index=False,
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    idempotency_key = models.CharField(
        max_length=32,
        unique=True,
        help_text=_("Sent to gateways that deduplicate (client_id_message, BSG reference)."),
    )
    provider_message_id = models.CharField(max_length=100, blank=True)
    parts = models.PositiveSmallIntegerField(default=0)
    price = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    native_channels = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Channels after this one that the gateway runs itself (native cascade)."),
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set by each claim; only the worker holding the same token may write its outcome, so a
    # worker whose lease ran out cannot overwrite what the sweeper or a newer claim decided.
    claim_token = models.CharField(max_length=32, blank=True, db_default="", default="")
    may_be_at_gateway = models.BooleanField(
        db_default=False,
        default=False,
        help_text=_(
            "A failed submit may have reached this account's gateway: retries stay on the "
            "same account, whose idempotency key makes a resend harmless."
        ),
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text=_("End of this step's TTL."))
    submitted_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    final_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = _("deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "step"], name="delivery_step_unique"),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="delivery_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(price__isnull=True) | Q(price__gte=0),
                name="delivery_price_not_negative",
            ),
            models.CheckConstraint(
                condition=~Q(idempotency_key="") & Q(idempotency_key__regex=r"^[A-Za-z0-9]{1,32}$"),
                name="delivery_idempotency_key_alnum",
            ),
        ]
        indexes = [
            # Claims (queued) and the sweeper's polls (sent, unknown): one account's due
            # rows. Only open rows are in it: a final row leaves the index when its status
            # is written, so neither the scans nor the writes grow with the history.
            models.Index(
                fields=["account", "status", "next_attempt_at"],
                condition=Q(
                    status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.UNKNOWN]
                ),
                name="delivery_account_due_open",
            ),
            # The sweeper's TTL scan of rows still waiting for an outcome.
            models.Index(
                fields=["expires_at"],
                condition=Q(
                    status__in=[
                        DeliveryStatus.QUEUED,
                        DeliveryStatus.SENT,
                        DeliveryStatus.UNKNOWN,
                        DeliveryStatus.PENDING,
                    ]
                ),
                name="delivery_open_expiry",
            ),
            models.Index(fields=["account", "provider_message_id"], name="delivery_provider_id"),
            models.Index(fields=["campaign", "status", "channel"], name="delivery_campaign_status"),
            # The sweeper's expired leases; only rows being submitted are in it.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="submitting"),
                name="delivery_submitting_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} step {self.step} of message {self.message_id}"


class DeliveryEvent(models.Model):
    """A status change of a delivery, with what the gateway actually said."""

    class Source(models.TextChoices):
        SUBMIT = "submit", _("Submit answer")
        CALLBACK = "callback", _("Callback")
        POLL = "poll", _("Polling")
        SYSTEM = "system", _("Cascade")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    provider_status = models.CharField(
        max_length=100, blank=True, help_text=_("The gateway's own word.")
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    payload = models.TextField(blank=True, help_text=_("Raw payload as received."))
    dedupe_key = models.CharField(max_length=100, blank=True)
    occurred_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When the gateway says it happened.")
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "dedupe_key"],
                condition=~Q(dedupe_key=""),
                name="delivery_event_dedupe",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_event_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["delivery", "received_at"], name="delivery_event_time")]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.status}"


class CampaignCounter(models.Model):
    """How many of a campaign's deliveries are in each status, per channel.

    Kept up to date by the same transactions that change delivery statuses, so
    the dashboard reads a handful of rows instead of counting 100k deliveries.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="counters")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "channel", "status"], name="campaign_counter_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.channel} {self.status}: {self.count}"


class CampaignCost(models.Model):
    """What a campaign has cost so far, per channel and currency (sum of delivery prices)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="costs")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=16, decimal_places=4, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "channel", "currency"], name="campaign_cost_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.channel}: {self.amount} {self.currency}"


class PartnerSend(models.Model):
    """One SendMessageProcess call that was taken in; its id is the `MessageId` the partner holds.

    It points at the one message sent, or at the campaign a CardPhoneClientList
    became, and remembers a digest of the request so that an identical retry
    within a minute gets the same answer instead of a second send.
    """

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    api_credential = models.ForeignKey(
        ApiCredential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_digest = models.CharField(max_length=64, help_text=_("SHA-256 of the parsed request."))
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="partner_send"
    )
    campaign = models.OneToOneField(
        Campaign, null=True, blank=True, on_delete=models.CASCADE, related_name="partner_send"
    )
    error_code = models.PositiveSmallIntegerField(default=0)
    answer = models.CharField(max_length=500, blank=True, help_text=_("The Message text answered."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["api_credential", "request_digest", "created_at"],
                name="partner_send_retry_lookup",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(message__isnull=True) | Q(campaign__isnull=True),
                name="partner_send_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"MessageId {self.pk}"


class FrequencyLedger(models.Model):
    """Promotional messages a client was sent on a channel: today, this week, the last one.

    One row per client and channel, moved by a single conditional upsert per batch
    (campaigns/caps.py): the row lock makes two dispatchers racing for the same
    client take turns, so neither can slip past the cap the other just reached.
    Days and weeks are the client's local calendar.
    """

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16)
    day = models.DateField()
    day_count = models.PositiveIntegerField(default=0)
    week = models.DateField(help_text=_("The Monday the week starts on."))
    week_count = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client", "channel"], name="frequency_ledger_client_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.client_id}/{self.channel}: {self.day_count} on {self.day}"


class LinkClick(models.Model):
    """The clicks on one message's tracked links (campaigns/links.py): first time and count."""

    message = models.OneToOneField(
        Message, primary_key=True, on_delete=models.CASCADE, related_name="link_click"
    )
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(
        Campaign, null=True, on_delete=models.CASCADE, related_name="link_clicks"
    )
    variant = models.ForeignKey(
        CampaignVariant, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    clicks = models.PositiveIntegerField(default=1)
    first_clicked_at = models.DateTimeField()
    last_clicked_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["campaign", "first_clicked_at"], name="link_click_campaign_time")
        ]

    def __str__(self) -> str:
        return f"{self.clicks} clicks on message {self.message_id}"


class InboundReply(models.Model):
    """A message a client sent back through a gateway (campaigns/replies.py)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        "providers.ProviderAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    provider_reply_id = models.CharField(max_length=100)
    phone = models.CharField(max_length=15)
    text = models.TextField(blank=True)
    channel = models.CharField(max_length=16, blank=True)
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replies",
        help_text=_("The message it answers, when the gateway or the phone tells."),
    )
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    is_opt_out = models.BooleanField(_("opt-out"), default=False)
    received_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("reply")
        verbose_name_plural = _("replies")
        ordering = ["-received_at", "-id"]
        constraints = [
            # A gateway that redelivers a reply must not record (or apply) it twice.
            models.UniqueConstraint(
                fields=["account", "provider_reply_id"], name="inbound_reply_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "-received_at"], name="inbound_reply_campaign"),
        ]

    def __str__(self) -> str:
        return f"Reply {self.provider_reply_id} from {self.phone}"
