"""What a marketer sees before launching: per-channel preview, SMS parts, Viber limits, cost.

Pure functions for the campaign page. Content goes through the same helpers
as dispatch (`content_for`, `render`, variables named as in
`outgoing.variables_for`), so the preview shows what a recipient would get.
Limits are those of ../shared/docs/protocols.md §5 and the cascade gateway's manual
(seed 003): GSM-7 160/153, UCS-2 70/67, Viber text ≤ 1000, caption ≤ 19,
a caption needs a URL and the reverse, an image needs a button.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import OuterRef, Subquery
from django.utils.translation import gettext as _

from campaigns import links
from campaigns.models import BUTTON_CAPTION_MAX, VIBER_TEXT_MAX, Campaign
from campaigns.rendering import content_for, render
from clients.models import Card, Client
from providers.models import ChannelRoute

PREVIEW_MESSAGE_ID = 10**9  # tracked links in the preview are as long as a billionth message's

# 3GPP TS 23.038 §6.2.1, the GSM 7-bit default alphabet in table order (0x00-0x7F),
# without 0x1B, the escape to the extension table. 0x09 is Ç (capital): a small ç
# is not in the set and switches a message to UCS-2.
GSM7_BASIC = "".join(
    (
        "@£$¥èéùìòÇ\nØø\rÅå",  # 0x00-0x0F
        "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",  # 0x10-0x1F, 0x1B (escape) left out
        " !\"#¤%&'()*+,-./",  # 0x20-0x2F
        "0123456789:;<=>?",  # 0x30-0x3F
        "¡ABCDEFGHIJKLMNO",  # 0x40-0x4F
        "PQRSTUVWXYZÄÖÑÜ§",  # 0x50-0x5F
        "¿abcdefghijklmno",  # 0x60-0x6F
        "pqrstuvwxyzäöñüà",  # 0x70-0x7F
    )
)
# The single-shift extension table (§6.2.1.1): each is sent as escape + code, two septets.
GSM7_EXTENSION = "\f^{}\\[~]|€"
_GSM7_BASIC = frozenset(GSM7_BASIC)
_GSM7_EXTENSION = frozenset(GSM7_EXTENSION)

GSM7 = "GSM-7"
UCS2 = "UCS-2"
# One part holds 140 octets; a split message loses 6 octets per part to the
# concatenation header (UDH), hence 160 → 153 septets and 70 → 67 UTF-16 units.
SINGLE_PART = {GSM7: 160, UCS2: 70}
PER_PART_WHEN_SPLIT = {GSM7: 153, UCS2: 67}

# Channels whose text goes out as an SMS (content_for gives them the SMS text).
SMS_CHANNELS = frozenset({"sms", "call_code"})
# Channels the cascade gateways can fall back from to SMS natively (send_viber,
# send_vk, then send_sms in one request), so their SMS text matters too.
SMS_FALLBACK_CHANNELS = frozenset({"viber", "vk"})

# Share of a channel's recipients that fall through to the next channel (not a
# Viber user, undelivered, expired). A guess until the campaign's own history
# exists; the page passes its own shares and shows the one it assumed.
DEFAULT_FALL_THROUGH = 0.1

SAMPLE_VARIABLES = {
    "first_name": "Anna",
    "last_name": "Smirnova",
    "middle_name": "Petrovna",
    "bonus": 150,
    "card": 1000001,
    "phone": "79000000000",
    "email": "anna@example.com",
}


# --- SMS encoding and parts -------------------------------------------------


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" or "UCS-2"
    length: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int  # parts the message is sent (and billed) as; 0 for empty text
    per_segment: int  # 160 / 153 / 70 / 67
    remaining: int  # units still free in the last part
    ucs2_characters: tuple[str, ...] = ()  # distinct characters that forced UCS-2, first seen first


def _forces_ucs2(char: str) -> bool:
    return char not in _GSM7_BASIC and char not in _GSM7_EXTENSION


def _units(char: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if char in _GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1  # outside the BMP: a surrogate pair


def sms_segments(text: str) -> SmsInfo:
    """Encoding, length and parts of an SMS text, as a phone or gateway would split it."""
    forcing = tuple(dict.fromkeys(char for char in text if _forces_ucs2(char)))
    encoding = UCS2 if forcing else GSM7
    single, split = SINGLE_PART[encoding], PER_PART_WHEN_SPLIT[encoding]
    units = [_units(char, encoding) for char in text]
    length = sum(units)
    if not text:
        return SmsInfo(GSM7, 0, 0, single, single)
    if length <= single:
        return SmsInfo(encoding, length, 1, single, single - length, forcing)
    # Walk the characters: an escape pair or a surrogate pair is never cut in
    # two, so a 2-unit character that finds 1 unit left starts the next part
    # (which is why this can be one more than ceil(length / split)).
    segments, used = 1, 0
    for size in units:
        if used + size > split:
            segments, used = segments + 1, 0
        used += size
    return SmsInfo(encoding, length, segments, split, split - used, forcing)


def highlight(text: str) -> list[tuple[str, bool]]:
    """The text in runs, True for runs of characters outside GSM-7 (they force UCS-2)."""
    runs: list[tuple[str, bool]] = []
    for char in text:
        flag = _forces_ucs2(char)
        if runs and runs[-1][1] == flag:
            runs[-1] = (runs[-1][0] + char, flag)
        else:
            runs.append((char, flag))
    return runs


# --- Viber ------------------------------------------------------------------


def viber_checks(*, text: str, button_caption: str, button_url: str, image_url: str) -> list[str]:
    """What the cascade gateway would refuse in a Viber message; empty when it is fine."""
    problems = []
    if not text:
        problems.append(_("The Viber text is empty; the gateway requires one."))
    elif len(text) > VIBER_TEXT_MAX:
        problems.append(
            _("The Viber text is %(length)d characters long; the limit is %(max)d.")
            % {"length": len(text), "max": VIBER_TEXT_MAX}
        )
    if len(button_caption) > BUTTON_CAPTION_MAX:
        problems.append(
            _("The button caption is %(length)d characters long; the limit is %(max)d.")
            % {"length": len(button_caption), "max": BUTTON_CAPTION_MAX}
        )
    if button_caption and not button_url:
        problems.append(_("The button has a caption but no URL."))
    if button_url and not button_caption:
        problems.append(_("The button has a URL but no caption."))
    if image_url and not (button_caption and button_url):
        problems.append(_("An image needs a button (caption and URL)."))
    return problems


# --- Preview ----------------------------------------------------------------


@dataclass
class ChannelPreview:
    channel: str
    title: str = ""
    text: str = ""
    html: str = ""
    sms_text: str = ""  # what `sms` measures: the text itself, or the SMS fallback of viber/vk
    sms: SmsInfo | None = None
    viber_problems: list[str] = field(default_factory=list)
    button_caption: str = ""
    button_url: str = ""
    image_url: str = ""
    route: list[str] | None = None  # account names in priority order; None: nothing serves it
    unit_price: Decimal | None = None  # per part, from the primary account (or its route)
    currency: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class CampaignPreview:
    campaign_id: int | None
    client: Client | None  # the sample recipient; None when made up
    variables: dict
    channels: list[ChannelPreview]

    @property
    def is_made_up(self) -> bool:
        return self.client is None

    @property
    def warnings(self) -> list[str]:
        return [warning for channel in self.channels for warning in channel.warnings]


def sample_client(operator_id: int) -> Client | None:
    """The operator's first client with a phone number, to render the preview for.

    Its best card (the active one with the most points, as dispatch picks) comes
    along as `best_card_bonus` / `best_card_number`, in the same query.
    """
    best = Card.objects.filter(client_id=OuterRef("pk"), status=Card.Status.ACTIVE).order_by(
        "-bonus"
    )
    return (
        Client.objects.filter(operator_id=operator_id)
        .exclude(phone="")
        .annotate(
            best_card_bonus=Subquery(best.values("bonus")[:1]),
            best_card_number=Subquery(best.values("number")[:1]),
        )
        .order_by("pk")
        .first()
    )


def variables_for_client(client: Client | None, *, operator_name: str) -> dict:
    """The variables dispatch would give this client (see outgoing.variables_for)."""
    if client is None:
        return {"operator": operator_name, **SAMPLE_VARIABLES}
    if hasattr(client, "best_card_bonus"):
        bonus, number = client.best_card_bonus, client.best_card_number
    else:
        # The same card as dispatch picks: the active one with the most points.
        card = (
            Card.objects.filter(client=client, status=Card.Status.ACTIVE)
            .order_by("-bonus")
            .values_list("bonus", "number")
            .first()
        )
        bonus, number = card if card else (None, None)
    return {
        "operator": operator_name,
        "phone": client.phone,
        "email": client.email,
        "first_name": client.first_name,
        "last_name": client.last_name,
        "middle_name": client.middle_name,
        "bonus": bonus,
        "card": number,
    }


@dataclass(frozen=True)
class _Pricing:
    names: list[str]
    unit_price: Decimal
    currency: str


def _pricing(operator_id: int) -> dict[str, _Pricing]:
    """Per routed channel: account names in priority order and the primary's price. One query.

    The same routes as `routing.routes_for` (enabled accounts, by priority). A
    route's own cost_per_part, when set, overrides the account's: one account
    may charge differently per channel (the cascade gateway's Viber vs SMS).
    """
    rows = (
        ChannelRoute.objects.filter(operator_id=operator_id, account__enabled=True)
        .select_related("account")
        .order_by("channel", "priority")
    )
    pricing: dict[str, _Pricing] = {}
    for row in rows:
        if row.channel in pricing:
            pricing[row.channel].names.append(row.account.name)
            continue
        price = row.cost_per_part if row.cost_per_part is not None else row.account.cost_per_part
        pricing[row.channel] = _Pricing(
            names=[row.account.name], unit_price=price, currency=row.account.currency
        )
    return pricing


def preview_campaign(
    campaign: Campaign, *, client: Client | None = None, variables: dict | None = None
) -> CampaignPreview:
    """Each channel of the cascade as a sample recipient would get it, with its route and price.

    Without `client`, the operator's first client with a phone stands in, or a
    made-up one when there is none. `variables` override any value, like a list
    row's own variables do at dispatch.
    """
    if client is None:
        client = sample_client(campaign.operator_id)
    values = variables_for_client(client, operator_name=campaign.operator.name)
    values.update(variables or {})
    template = campaign.template
    pricing = _pricing(campaign.operator_id)
    channels = []
    for channel in campaign.channels:
        content = content_for(channel, template=template)
        if campaign.track_links:
            # Counted with a code as long as a billionth message's, as the SMS will carry.
            links.rewrite(content, PREVIEW_MESSAGE_ID, channel)
        item = ChannelPreview(
            channel=channel,
            title=render(content.title, values),
            text=render(content.text, values),
            html=render(content.html, values),
            button_caption=content.button_caption,
            button_url=content.button_url,
            image_url=content.image_url,
        )
        if channel in SMS_CHANNELS:
            item.sms_text = item.text
            item.sms = sms_segments(item.sms_text)
        elif channel in SMS_FALLBACK_CHANNELS and content.sms_text:
            item.sms_text = render(content.sms_text, values)
            item.sms = sms_segments(item.sms_text)
        if channel == "viber":
            item.viber_problems = viber_checks(
                text=item.text,
                button_caption=item.button_caption,
                button_url=item.button_url,
                image_url=item.image_url,
            )
        priced = pricing.get(channel)
        if priced is None:
            item.warnings.append(_("no provider account serves %(channel)s") % {"channel": channel})
        else:
            item.route = list(priced.names)
            item.unit_price = priced.unit_price
            item.currency = priced.currency
        channels.append(item)
    return CampaignPreview(
        campaign_id=campaign.pk, client=client, variables=values, channels=channels
    )


# --- Cost -------------------------------------------------------------------


@dataclass
class CostLine:
    channel: str
    reach: Decimal  # expected recipients at this step (before rounding)
    messages: int
    parts: int  # per message: SMS parts for SMS channels, else 1
    unit_price: Decimal | None
    currency: str
    cost: Decimal
    note: str = ""


@dataclass
class CostEstimate:
    recipients: int
    fall_through: dict[str, float]  # the shares assumed, per channel
    lines: list[CostLine]
    totals: dict[str, Decimal]  # per currency

    @property
    def notes(self) -> list[str]:
        return [f"{line.channel}: {line.note}" for line in self.lines if line.note]


def _parts(item: ChannelPreview) -> int:
    if item.channel in SMS_CHANNELS:
        return item.sms.segments if item.sms else 0
    return 1


def estimate_cost(
    campaign: Campaign,
    *,
    recipients: int,
    fall_through: dict[str, float] | None = None,
    preview: CampaignPreview | None = None,
) -> CostEstimate:
    """Expected messages and cost per channel of the cascade, and the total per currency.

    Every recipient reaches the first channel; `fall_through[channel]` of those
    go on to the next (DEFAULT_FALL_THROUGH where not given). A channel nothing
    serves is skipped by dispatch, so all its recipients go on. SMS parts come
    from the sample recipient's text (`preview`, computed when not passed).
    """
    if recipients < 0:
        raise ValueError("recipients must not be negative")
    shares = {channel: DEFAULT_FALL_THROUGH for channel in campaign.channels}
    shares.update(fall_through or {})
    for channel, share in shares.items():
        if not 0 <= share <= 1:
            raise ValueError(f"fall_through[{channel!r}] must be between 0 and 1, not {share}")
    if preview is None:
        preview = preview_campaign(campaign)
    reach = Decimal(recipients)
    lines = []
    totals: dict[str, Decimal] = {}
    for item in preview.channels:
        messages = int(reach.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        parts = _parts(item)
        line = CostLine(
            channel=item.channel,
            reach=reach,
            messages=messages,
            parts=parts,
            unit_price=item.unit_price,
            currency=item.currency,
            cost=Decimal(0),
        )
        if item.route is None:
            line.messages = 0
            line.note = _("no provider account serves it: skipped, all go on to the next channel")
            lines.append(line)
            continue  # the whole reach goes on
        if parts == 0:
            line.note = _("the SMS text is empty: costs 0")
        elif not item.unit_price:
            line.note = _("no price per part on %(account)s: counted as 0") % {
                "account": item.route[0]
            }
        line.cost = messages * parts * (item.unit_price or Decimal(0))
        totals[item.currency] = totals.get(item.currency, Decimal(0)) + line.cost
        lines.append(line)
        reach *= Decimal(str(shares[item.channel]))
    return CostEstimate(recipients=recipients, fall_through=shares, lines=lines, totals=totals)
