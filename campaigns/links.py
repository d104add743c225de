"""Tracked links: a campaign's URLs sent as short links on our own host, /l/<code>.

The code carries the message id, the channel and the URL's position, signed with a
short HMAC: nothing is written per message at send time, an unknown or tampered code
is refused without touching the database, and a code cannot be guessed into another
message's (or tenant's) link. A click is one upsert into LinkClick (first time, count),
whose RETURNING gives the campaign and variant the target URL is looked up by; the
targets (with UTM parameters) are cached per process.

URLs that contain a `{{ placeholder }}` are left as they are: their target differs per
client, and the code does not carry the client's values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, CampaignVariant, LinkClick, Message
from campaigns.rendering import content_for
from clients.channels import Channel

URL = re.compile(r"https?://[^\s<>\"']+")
TRAILING = ".,;:!?)"  # sentence punctuation after a URL is not part of it
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SIGNATURE_CHARS = 5  # 62**5: about 1 in 916 million for a guessed code
CHANNELS = [choice.value for choice in Channel]  # append only: codes in the wild use the index
MAX_LINKS = 16
TARGET_CACHE_SECONDS = 60.0


def base62(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = ALPHABET[rest] + digits
        if not number:
            return digits


def from_base62(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + ALPHABET.index(char)
    return number


def signature(payload: int) -> str:
    key = hashlib.sha256(b"cascade.links:" + settings.SECRET_KEY.encode()).digest()
    digest = hmac.new(key, str(payload).encode(), hashlib.sha256).digest()
    return base62(int.from_bytes(digest[:8], "big"))[-SIGNATURE_CHARS:].rjust(SIGNATURE_CHARS, "0")


def encode(message_id: int, channel: str, index: int) -> str:
    payload = (message_id * len(CHANNELS) + CHANNELS.index(channel)) * MAX_LINKS + index
    return base62(payload) + signature(payload)


def decode(code: str) -> tuple[int, str, int] | None:
    if not (SIGNATURE_CHARS < len(code) <= 24) or any(c not in ALPHABET for c in code):
        return None
    payload = from_base62(code[:-SIGNATURE_CHARS])
    if not hmac.compare_digest(signature(payload), code[-SIGNATURE_CHARS:]):
        return None
    rest, index = divmod(payload, MAX_LINKS)
    message_id, channel_index = divmod(rest, len(CHANNELS))
    return message_id, CHANNELS[channel_index], index


def short_url(code: str) -> str:
    return f"{settings.CASCADE_PUBLIC_URL.rstrip('/')}/l/{code}"


def trackable_urls(*texts: str) -> list[str]:
    """Distinct URLs in order of appearance, without the ones that hold a placeholder."""
    found: list[str] = []
    for text in texts:
        for match in URL.finditer(text or ""):
            url = match.group(0).rstrip(TRAILING)
            if "{{" not in url and url not in found and len(found) < MAX_LINKS:
                found.append(url)
    return found


def rewrite(content, message_id: int, channel: str) -> None:
    """Replace the trackable URLs of `content` (rendering.Content) by their short links."""
    urls = trackable_urls(content.text, content.html, content.sms_text, content.button_url)
    if not urls:
        return
    short = {url: short_url(encode(message_id, channel, i)) for i, url in enumerate(urls)}

    def replace(match: re.Match) -> str:
        # The same URL matches as trackable_urls found it, so positions agree.
        url = match.group(0).rstrip(TRAILING)
        return short.get(url, url) + match.group(0)[len(url) :]

    for field in ("text", "html", "sms_text", "button_url"):
        value = getattr(content, field)
        if value:
            setattr(content, field, URL.sub(replace, value))


def with_utm(url: str, *, campaign: Campaign, channel: str, variant: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    utm = {
        "utm_source": "cascade",
        "utm_medium": channel,
        "utm_campaign": f"{campaign.pk}",
        "utm_content": variant or "main",
    }
    query += [(name, value) for name, value in utm.items() if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


_targets: dict[tuple, tuple[float, list[str]]] = {}


def targets(campaign_id: int, variant_id: int | None, channel: str) -> list[str]:
    key = (campaign_id, variant_id, channel)
    cached = _targets.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    campaign = Campaign.objects.select_related("template").get(pk=campaign_id)
    template, label = campaign.template, ""
    if variant_id is not None:
        variant = CampaignVariant.objects.select_related("template").get(pk=variant_id)
        template, label = variant.template, variant.label
    content = content_for(channel, template=template)
    urls = trackable_urls(content.text, content.html, content.sms_text, content.button_url)
    found = [with_utm(u, campaign=campaign, channel=channel, variant=label) for u in urls]
    _targets[key] = (time.monotonic() + TARGET_CACHE_SECONDS, found)
    return found


CLICK_SQL = f"""
    INSERT INTO {LinkClick._meta.db_table} (
        message_id, operator_id, campaign_id, variant_id, channel, clicks,
        first_clicked_at, last_clicked_at
    )
    SELECT id, operator_id, campaign_id, variant_id, %s, 1, %s, %s
    FROM {Message._meta.db_table} WHERE id = %s AND campaign_id IS NOT NULL
    ON CONFLICT (message_id) DO UPDATE
    SET clicks = {LinkClick._meta.db_table}.clicks + 1, last_clicked_at = excluded.last_clicked_at
    RETURNING campaign_id, variant_id
"""  # noqa: S608 - table names only


def click(code: str) -> str | None:
    """Record a click on `code` and return where it goes, or None for an unknown code."""
    decoded = decode(code)
    if decoded is None:
        return None
    message_id, channel, index = decoded
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(CLICK_SQL, [channel, now, now, message_id])
        row = cursor.fetchone()
    if row is None:
        return None
    urls = targets(row[0], row[1], channel)
    return urls[index] if index < len(urls) else None
