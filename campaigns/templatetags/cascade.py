"""Filters the pages format with: `{% load cascade %}`."""

from django import template

from campaigns import labels
from clients import formats

register = template.Library()

# The engine's codes in the reader's words (campaigns/labels.py).
register.filter("channel_label", labels.channel_label)
register.filter("status_label", labels.status_label)
register.filter("reason_label", labels.reason_label)
register.filter("is_engine_reason", labels.is_engine_reason)
# A count with the language's grouping: 12 345 in Russian, 12,345 in English.
register.filter("count", formats.number)


@register.filter
def money(amount, currency):
    """`{{ amount|money:currency }}`: 117,30 ₽ in Russian, RUB117.30 in English."""
    return formats.money(amount, currency)


@register.filter
def unit_money(amount, currency):
    """A price per part, every digit kept: 0,0525 ₽."""
    return formats.money(amount, currency, exact=True)


@register.filter
def channel_path(codes):
    """A cascade's channels as a path: Viber → SMS."""
    return " → ".join(labels.channel_label(code) for code in codes)
