"""Filters the pages format with: `{% load cascade %}`."""

from django import template

from campaigns import labels
from clients import formats

register = template.Library()


@register.filter
def money(amount, currency):
    """`{{ amount|money:currency }}`: 117,30 ₽ in Russian, RUB117.30 in English."""
    return formats.money(amount, currency)


@register.filter
def unit_money(amount, currency):
    """A price per part, every digit kept: 0,0525 ₽."""
    return formats.money(amount, currency, exact=True)


@register.filter
def channel_label(code):
    return labels.channel_label(code)


@register.filter
def status_label(code):
    return labels.status_label(code)


@register.filter
def reason_label(code):
    return labels.reason_label(code)


@register.filter
def is_engine_reason(code):
    return labels.is_engine_reason(code)


@register.filter
def count(value):
    """A count with the language's grouping: 12 345 in Russian, 12,345 in English."""
    return formats.number(value)


@register.filter
def channel_path(codes):
    """A cascade's channels as a path: Viber → SMS."""
    return " → ".join(labels.channel_label(code) for code in codes)
