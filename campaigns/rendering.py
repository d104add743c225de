"""Per-recipient content: `{{ variable }}` placeholders and per-channel texts.

Deliberately not the Django template language: templates are written by
marketers, rendered a million times per campaign, and must not reach object
attributes or run tags. A placeholder with no value renders as empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(text: str, variables: dict) -> str:
    if "{{" not in text:
        return text
    lowered = {str(key).lower(): value for key, value in variables.items()}

    def value_of(match: re.Match) -> str:
        value = lowered.get(match.group(1).lower())
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, Decimal):
            # A bonus of 150.00 reads "150" (and costs SMS characters otherwise).
            value = int(value) if value == value.to_integral_value() else value.normalize()
        return str(value)

    return PLACEHOLDER.sub(value_of, text)


def placeholders(text: str) -> list[str]:
    return sorted({match.group(1) for match in PLACEHOLDER.finditer(text or "")})


@dataclass
class Content:
    title: str = ""
    text: str = ""
    html: str = ""
    sms_text: str = ""
    button_caption: str = ""
    button_url: str = ""
    image_url: str = ""


def content_for(channel: str, *, template=None, title: str = "", text: str = "") -> Content:
    """The unrendered content a channel takes from a template, or from a one-off message."""
    if template is None:
        return Content(title=title, text=text, sms_text=text)
    sms_text = template.sms_text or template.text
    if channel == "sms" or channel == "call_code":
        body = sms_text
    elif channel == "viber":
        body = template.viber_text or template.text or sms_text
    else:
        body = template.text or sms_text or template.viber_text
    content = Content(title=template.title, text=body, sms_text=sms_text)
    if channel == "email":
        content.html = template.html
        content.text = template.text or sms_text
    if channel == "viber":
        content.button_caption = template.button_caption
        content.button_url = template.button_url
        content.image_url = template.image_url
    return content
