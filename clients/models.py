"""Tenants, their clients, consent and partner credentials.

Models stay thin: invariants live in database constraints, behaviour in
clients/services.py.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from clients.channels import CONSENT_FLAGS, Channel

DEFAULT_OPT_OUT_KEYWORDS = "STOP, СТОП, ОТПИСАТЬСЯ, ОТПИСКА"
PHONE_DIGITS_REGEX = r"^[1-9][0-9]{6,14}$"


class Operator(models.Model):
    """A loyalty program operator: the tenant. Every other row belongs to one."""

    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=50, unique=True, help_text=_("Short stable identifier."))
    time_zone = models.CharField(max_length=64, default="Europe/Moscow")
    default_region = models.CharField(
        max_length=2, default="RU", help_text=_("Region for phone numbers without a country code.")
    )
    is_active = models.BooleanField(default=True)
    # Frequency caps on promotional messages (0: no cap); a campaign may override each.
    cap_per_day = models.PositiveSmallIntegerField(
        _("messages per client per channel a day"),
        default=0,
        db_default=0,
        help_text=_("0: no cap. Service messages are never capped."),
    )
    cap_per_week = models.PositiveSmallIntegerField(
        _("messages per client per channel a week"), default=0, db_default=0
    )
    cap_min_gap_minutes = models.PositiveIntegerField(
        _("minimum gap between two messages on a channel (minutes)"), default=0, db_default=0
    )
    # Replies that mean "stop": matched whole, ignoring case, spaces and trailing punctuation.
    opt_out_keywords = models.CharField(
        _("opt-out reply keywords"),
        max_length=500,
        default=DEFAULT_OPT_OUT_KEYWORDS,
        db_default=DEFAULT_OPT_OUT_KEYWORDS,
        blank=True,
        help_text=_(
            "Comma-separated. A client's reply that is one of these turns off the consent "
            "of the channel it came on."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OperatorMember(models.Model):
    """Which operators a staff user works in; superusers see every operator."""

    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_memberships"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["operator", "user"], name="operator_member_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.operator}"


class PointOfSale(models.Model):
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="points_of_sale")
    code = models.CharField("PosCode", max_length=64)
    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100, blank=True)
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        db_default="",
        help_text=_("IANA zone; clients registered here without a zone of their own get it."),
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("point of sale")
        verbose_name_plural = _("points of sale")
        ordering = ["operator", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "code"], name="pos_code_unique_per_operator"
            ),
            models.CheckConstraint(condition=~Q(code=""), name="pos_code_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Tag(models.Model):
    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "name"], name="tag_name_unique_per_operator"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Client(models.Model):
    """A loyalty program participant. Its id is the `Client` of the partner API."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="clients")
    phone = models.CharField(
        max_length=15,
        blank=True,
        help_text=_("International digits without '+', e.g. 79123456789."),
    )
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    middle_name = models.CharField(max_length=100, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    registered_pos = models.ForeignKey(
        PointOfSale, null=True, blank=True, on_delete=models.SET_NULL, related_name="clients"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="clients")
    push_tokens = models.JSONField(default=list, blank=True)
    viber_id = models.CharField(max_length=64, blank=True)
    telegram_chat_id = models.BigIntegerField(null=True, blank=True)
    vk_id = models.CharField(max_length=64, blank=True)

    # Consent flags. Change them only through clients.services.change_consent so
    # that every change is written to ConsentChange.
    allow_sms = models.BooleanField(_("SMS allowed"), default=False)
    allow_email = models.BooleanField(_("email allowed"), default=False)
    allow_push = models.BooleanField(_("push allowed"), default=False)
    allow_email_online_cheque = models.BooleanField(_("online cheques by email"), default=False)

    last_purchase_at = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        db_default="",  # bulk loaders insert clients in raw SQL that does not name it
        help_text=_(
            "IANA zone, e.g. Asia/Vladivostok; empty: the operator's. Birthday hours and send "
            "windows apply in it."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "phone"],
                condition=~Q(phone=""),
                name="client_phone_unique_per_operator",
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=PHONE_DIGITS_REGEX),
                name="client_phone_international_digits",
            ),
        ]
        indexes = [
            models.Index(fields=["operator", "email"], name="client_operator_email"),
            models.Index(fields=["operator", "last_name"], name="client_operator_last_name"),
            # The distinct zones of an operator's clients (clients/zones.py).
            models.Index(fields=["operator", "time_zone"], name="client_operator_time_zone"),
        ]

    def __str__(self) -> str:
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or self.phone or self.email or f"client {self.pk}"

    @property
    def consent(self) -> dict[str, bool]:
        return {flag: getattr(self, flag) for flag in CONSENT_FLAGS}


class Card(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        BLOCKED = "blocked", _("Blocked")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="cards")
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="cards"
    )
    number = models.BigIntegerField(help_text=_("Card number as partners send it (integer)."))
    bonus = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    bonus_expires_at = models.DateTimeField(
        _("bonus expires at"),
        null=True,
        blank=True,
        help_text=_("When the card's current bonus points expire; empty: they do not."),
    )
    issued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "number"], name="card_number_unique_per_operator"
            ),
            models.CheckConstraint(condition=Q(number__gt=0), name="card_number_positive"),
            models.CheckConstraint(condition=Q(bonus__gte=0), name="card_bonus_not_negative"),
            models.CheckConstraint(
                condition=Q(status__in=["active", "blocked"]), name="card_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return str(self.number)


class ConsentChange(models.Model):
    """Append-only history of consent flags: who, when, through which door, old -> new."""

    class Source(models.TextChoices):
        ADMIN = "admin", _("Admin")
        PAGE = "page", _("Client page")
        API = "api", _("Partner API")
        IMPORT = "import", _("Import")
        SYSTEM = "system", _("System")
        UNSUBSCRIBE = "unsubscribe", _("Unsubscribe link")
        REPLY = "reply", _("Reply to a message")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="consent_changes")
    flag = models.CharField(max_length=32, choices=[(flag, flag) for flag in CONSENT_FLAGS])
    old_value = models.BooleanField(null=True, help_text=_("Empty when the client was created."))
    new_value = models.BooleanField()
    source = models.CharField(max_length=16, choices=Source.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    api_credential = models.ForeignKey(
        "clients.ApiCredential", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-changed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(flag__in=CONSENT_FLAGS), name="consent_change_flag_valid"
            ),
            models.CheckConstraint(
                condition=Q(
                    source__in=["admin", "page", "api", "import", "system", "unsubscribe", "reply"]
                ),
                name="consent_change_source_valid",
            ),
            models.CheckConstraint(
                condition=Q(old_value__isnull=True) | ~Q(old_value=models.F("new_value")),
                name="consent_change_changes_something",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "-changed_at"], name="consent_change_client_time")
        ]

    def __str__(self) -> str:
        return f"{self.flag}: {self.old_value} -> {self.new_value}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Consent history is append-only; rows cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Consent history is append-only; rows cannot be deleted.")


class Lead(models.Model):
    """A prospect who left contacts but is not a client yet (`Leads` in the partner API)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="leads")
    phone = models.CharField(max_length=15, blank=True)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text=_("Where the lead came from."))
    point_of_sale = models.ForeignKey(
        PointOfSale, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
    )
    client = models.ForeignKey(
        Client,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leads",
        help_text=_("Set once the lead became a client."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__regex=PHONE_DIGITS_REGEX),
                name="lead_phone_international_digits",
            ),
            models.CheckConstraint(
                condition=~Q(phone="", email=""), name="lead_has_phone_or_email"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.phone or self.email


MESSENGER_CHOICES = [
    (Channel.TELEGRAM.value, Channel.TELEGRAM.label),
    (Channel.VIBER.value, Channel.VIBER.label),
    (Channel.VK.value, Channel.VK.label),
    (Channel.WHATSAPP.value, Channel.WHATSAPP.label),
]
MESSENGERS = [value for value, _ in MESSENGER_CHOICES]


class Subscriber(models.Model):
    """A person subscribed to the operator's bot in a messenger (`Subscriber`)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="subscribers")
    messenger = models.CharField(max_length=16, choices=MESSENGER_CHOICES)
    external_id = models.CharField(max_length=64, help_text=_("The messenger's own user id."))
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    phone = models.CharField(max_length=15, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    is_subscribed = models.BooleanField(default=True)
    subscribed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "messenger", "external_id"],
                name="subscriber_unique_per_messenger",
            ),
            models.CheckConstraint(
                condition=Q(messenger__in=MESSENGERS), name="subscriber_messenger_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.messenger}:{self.external_id}"


class MessengerChat(models.Model):
    """A group or channel the operator posts to (`ChatId` in the partner API)."""

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="chats")
    messenger = models.CharField(max_length=16, choices=MESSENGER_CHOICES)
    chat_id = models.BigIntegerField()
    title = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(
                fields=["operator", "messenger", "chat_id"], name="chat_unique_per_messenger"
            ),
            models.CheckConstraint(
                condition=Q(messenger__in=MESSENGERS), name="chat_messenger_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.messenger}:{self.chat_id}"


class ApiCredential(models.Model):
    """A partner's key to the LCManager-style API, bound to one operator.

    Only a SHA-256 digest of the secret is stored; the secret itself is shown
    once, when issued. `Token` is an integer in the partner protocol, a widget
    authenticates with a `SiteCode` string instead.
    """

    class Kind(models.TextChoices):
        TOKEN = "token", _("Token")
        SITE_CODE = "site_code", _("Site code")

    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, related_name="api_credentials")
    name = models.CharField(
        max_length=200, help_text=_("Who holds it, e.g. 'POS software at shop 12'.")
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TOKEN)
    secret_digest = models.CharField(max_length=64, unique=True, editable=False)
    secret_hint = models.CharField(
        max_length=8, editable=False, help_text=_("Last characters, to recognise it.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["token", "site_code"]), name="api_credential_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (…{self.secret_hint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ClientEvent(models.Model):
    """A purchase, registration or bonus change a partner reported (api/client/ClientEvent).

    Applying it moves the client's or card's fields that triggers read
    (last_purchase_at, registered_at, bonus and its expiry); the row keeps what
    was reported, by whom and when, for the history and for measuring uplift.
    """

    class Kind(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        REGISTRATION = "registration", _("Registration")
        BONUS = "bonus", _("Bonus points")

    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(_("event"), max_length=16, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("occurred at"))
    card = models.ForeignKey(
        "Card", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    bonus = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    bonus_expires_at = models.DateTimeField(null=True, blank=True)
    api_credential = models.ForeignKey(
        ApiCredential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("client event")
        indexes = [models.Index(fields=["client", "kind", "occurred_at"], name="client_event_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of client {self.client_id} at {self.occurred_at}"
