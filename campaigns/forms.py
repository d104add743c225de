"""The campaign builder's and template editor's forms: plain Django forms over the models.

The builder edits a draft only. Its audience fields become the campaign's
segment JSON (see `campaigns/audience.py` for the keys); its schedule is
entered in the operator's time zone and stored in UTC.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.utils.translation import gettext_lazy as _

from campaigns.audience import validate_segment
from campaigns.models import Campaign, CampaignVariant, MessageTemplate
from clients.channels import Channel
from clients.models import PointOfSale, Tag

CASCADE_STEPS = 3
CHANNEL_CHOICES = [("", "—")] + [(c.value, c.label) for c in Channel]
CONSENT_CHOICES = [
    ("", _("Any (the cascade checks each channel)")),
    ("allow_sms", _("SMS allowed")),
    ("allow_email", _("Email allowed")),
    ("allow_push", _("Push allowed")),
    ("allow_email_online_cheque", _("Online cheques by email allowed")),
]


class TemplateForm(forms.ModelForm):
    # Declared here so the form says which scheme a bare "example.com" gets.
    button_url = forms.URLField(required=False, assume_scheme="https")
    image_url = forms.URLField(
        required=False, assume_scheme="https", help_text=_("Viber image; needs a button.")
    )

    class Meta:
        model = MessageTemplate
        fields = [
            "name",
            "title",
            "text",
            "sms_text",
            "viber_text",
            "button_caption",
            "button_url",
            "image_url",
            "html",
        ]
        widgets = {
            "text": forms.Textarea(attrs={"rows": 4}),
            "sms_text": forms.Textarea(attrs={"rows": 3}),
            "viber_text": forms.Textarea(attrs={"rows": 4}),
            "html": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, operator, **kwargs):
        self.operator = operator
        super().__init__(*args, **kwargs)

    def clean_name(self):
        name = self.cleaned_data["name"]
        taken = MessageTemplate.objects.filter(operator=self.operator, name=name)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise ValidationError(_("Another template already has this name."))
        return name

    def save(self, commit=True):
        self.instance.operator = self.operator
        return super().save(commit)


class SegmentForm(forms.Form):
    """The audience filters; also what the live recipient count reads from the query string."""

    consent = forms.ChoiceField(choices=CONSENT_CHOICES, required=False)
    pos = forms.ModelMultipleChoiceField(
        queryset=PointOfSale.objects.none(), required=False, label=_("Registered at")
    )
    tags = forms.ModelMultipleChoiceField(
        queryset=Tag.objects.none(), required=False, to_field_name="name"
    )
    bonus_min = forms.DecimalField(required=False, min_value=0, label=_("Bonus from"))
    bonus_max = forms.DecimalField(required=False, min_value=0, label=_("Bonus to"))
    registered_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    registered_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    last_purchase_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    last_purchase_to = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    has_phone = forms.BooleanField(required=False, label=_("Has a phone"))
    has_email = forms.BooleanField(required=False, label=_("Has an email"))

    def __init__(self, *args, operator, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pos"].queryset = PointOfSale.objects.filter(operator=operator)
        self.fields["tags"].queryset = Tag.objects.filter(operator=operator)

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("bonus_min"), cleaned.get("bonus_max")
        if low is not None and high is not None and low > high:
            self.add_error("bonus_max", _("Must not be below 'Bonus from'."))
        return cleaned

    def segment(self) -> dict:
        data = self.cleaned_data
        segment: dict = {}
        if data.get("consent"):
            segment["consent"] = data["consent"]
        if data.get("pos"):
            segment["pos"] = sorted(pos.pk for pos in data["pos"])
        if data.get("tags"):
            segment["tags"] = sorted(tag.name for tag in data["tags"])
        for key in ("bonus_min", "bonus_max"):
            if data.get(key) is not None:
                segment[key] = float(data[key])
        for key in ("registered_from", "registered_to", "last_purchase_from", "last_purchase_to"):
            if data.get(key):
                segment[key] = data[key].isoformat()
        for key in ("has_phone", "has_email"):
            if data.get(key):
                segment[key] = True
        validate_segment(segment)
        return segment

    @staticmethod
    def initial_from(segment: dict) -> dict:
        initial = dict(segment)
        initial.pop("clients", None)
        return initial


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    template = forms.ModelChoiceField(
        queryset=MessageTemplate.objects.none(),
        required=False,
        help_text=_("Pick a template, or write the text below to make a new one."),
    )
    new_text = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label=_("Or write the text"),
        help_text=_(
            "Variables: {{ first_name }}, {{ last_name }}, {{ bonus }}, {{ card }}, "
            "{{ operator }}, and a list's own columns such as {{ Bonus }}."
        ),
    )
    audience_kind = forms.ChoiceField(
        choices=Campaign.AudienceKind.choices, widget=forms.RadioSelect, initial="segment"
    )
    audience_file = forms.FileField(
        required=False,
        label=_("List (CSV)"),
        help_text=_("Columns: phone, card or client, and any variables (e.g. Bonus)."),
    )
    start = forms.ChoiceField(
        choices=[("now", _("As soon as it is launched")), ("at", _("At a time"))],
        widget=forms.RadioSelect,
        initial="now",
    )
    scheduled_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        label=_("Start at (operator time)"),
    )
    send_window_start = forms.TimeField(
        required=False, widget=forms.TimeInput(attrs={"type": "time"}), label=_("Send from")
    )
    send_window_end = forms.TimeField(
        required=False, widget=forms.TimeInput(attrs={"type": "time"}), label=_("Send until")
    )
    ttl_minutes = forms.IntegerField(
        min_value=1, max_value=7 * 24 * 60, initial=1440, label=_("Each step's lifetime (minutes)")
    )
    read_is_final = forms.BooleanField(
        required=False, label=_("Only 'read' counts as done (delivered but unread falls through)")
    )
    # What starts it: once, on a trigger, or on a schedule.
    kind = forms.ChoiceField(
        label=_("Runs"),
        choices=[
            (Campaign.Kind.ONE_OFF, _("Once")),
            (Campaign.Kind.TRIGGER, _("On a trigger, for each client it catches")),
            (Campaign.Kind.RECURRING, _("Repeatedly, on a schedule")),
        ],
        widget=forms.RadioSelect,
        initial=Campaign.Kind.ONE_OFF,
        required=False,  # a form without it (an older page, a script) builds a one-off
    )
    trigger = forms.ChoiceField(
        label=_("Trigger"), choices=[("", "—"), *Campaign.Trigger.choices], required=False
    )
    trigger_delay_minutes = forms.IntegerField(
        label=_("Delay after the event (minutes)"), min_value=0, initial=0, required=False
    )
    trigger_days = forms.IntegerField(
        label=_("Days"),
        min_value=0,
        initial=0,
        required=False,
        help_text=_(
            "Birthday: days before (0: on the day). Bonus expiring: within this many days. "
            "No purchase: for this many days."
        ),
    )
    trigger_local_hour = forms.IntegerField(
        label=_("Not before (client's local hour)"), min_value=0, max_value=23, required=False
    )
    recurrence = forms.ChoiceField(
        label=_("Repeats"), choices=[("", "—"), *Campaign.Recurrence.choices], required=False
    )
    recurrence_time = forms.TimeField(
        label=_("Run at (operator time)"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}),
    )
    recurrence_day = forms.IntegerField(
        label=_("Day"),
        min_value=0,
        max_value=28,
        required=False,
        help_text=_("Weekly: 0 Monday to 6 Sunday. Monthly: day of the month, 1 to 28."),
    )
    cap_per_day = forms.IntegerField(
        label=_("Cap a day"),
        min_value=0,
        required=False,
        help_text=_("Messages per client per channel; empty: the operator's; 0: no cap."),
    )
    cap_per_week = forms.IntegerField(label=_("Cap a week"), min_value=0, required=False)
    cap_min_gap_minutes = forms.IntegerField(
        label=_("Minimum gap (minutes)"), min_value=0, required=False
    )

    # Experiments: variant A is the template above; B to D are other templates.
    ab_mode = forms.ChoiceField(
        label=_("Variants"), choices=Campaign.Testing.choices, initial="none", required=False
    )
    variant_b = forms.TypedChoiceField(
        label=_("Variant B"), coerce=int, empty_value=None, required=False
    )
    variant_c = forms.TypedChoiceField(
        label=_("Variant C"), coerce=int, empty_value=None, required=False
    )
    variant_d = forms.TypedChoiceField(
        label=_("Variant D"), coerce=int, empty_value=None, required=False
    )
    ab_test_percent = forms.IntegerField(
        label=_("Test share (%)"), min_value=1, max_value=100, initial=20, required=False
    )
    ab_wait_minutes = forms.IntegerField(
        label=_("Pick the winner after (minutes)"), min_value=1, initial=240, required=False
    )
    ab_metric = forms.ChoiceField(
        label=_("Winner by"), choices=Campaign.WinnerMetric.choices, initial="click", required=False
    )
    holdout_percent = forms.IntegerField(
        label=_("Control group (%)"), min_value=0, max_value=50, initial=0, required=False
    )
    holdout_days = forms.IntegerField(
        label=_("Measure purchases over (days)"),
        min_value=1,
        max_value=90,
        initial=7,
        required=False,
    )
    track_links = forms.BooleanField(label=_("Track links"), required=False, initial=True)

    def __init__(self, *args, operator, campaign=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.operator = operator
        self.fields["template"].queryset = MessageTemplate.objects.filter(operator=operator)
        # One query for the template and variant pickers and the campaign's variants (a
        # ModelChoiceField queries on every render; the page has a budget of ten).
        rows = MessageTemplate.objects.filter(operator=operator).annotate(
            variant=Subquery(
                CampaignVariant.objects.filter(
                    campaign_id=campaign.pk if campaign else None, template=OuterRef("pk")
                )
                .exclude(label="A")
                .values("label")[:1]
            )
        )
        choices = []
        for pk, name, label in rows.values_list("pk", "name", "variant"):
            choices.append((pk, name))
            if label and label in "BCD" and not self.is_bound:
                self.initial[f"variant_{label.lower()}"] = pk
        self.fields["template"].widget.choices = [("", "---------"), *choices]
        for field in ("variant_b", "variant_c", "variant_d"):
            self.fields[field].choices = [("", "—"), *choices]
        for step in range(CASCADE_STEPS):
            self.fields[f"channel_{step}"] = forms.ChoiceField(
                choices=CHANNEL_CHOICES,
                required=step == 0,
                label=_("Step %(number)d") % {"number": step + 1},
            )

    def channel_fields(self):
        return [self[f"channel_{step}"] for step in range(CASCADE_STEPS)]

    def clean(self):
        cleaned = super().clean()
        channels = [cleaned.get(f"channel_{step}") for step in range(CASCADE_STEPS)]
        channels = [channel for channel in channels if channel]
        if len(set(channels)) != len(channels):
            raise ValidationError(_("A channel may appear only once in the cascade."))
        cleaned["channels"] = channels
        if not cleaned.get("template") and not (cleaned.get("new_text") or "").strip():
            self.add_error("template", _("Pick a template or write the text."))
        if cleaned.get("start") == "at":
            at = cleaned.get("scheduled_at")
            if at is None:
                self.add_error("scheduled_at", _("Give the start time."))
            else:
                cleaned["scheduled_at"] = self.in_operator_time(at)
        else:
            cleaned["scheduled_at"] = None
        kind = cleaned["kind"] = cleaned.get("kind") or Campaign.Kind.ONE_OFF
        if kind == Campaign.Kind.TRIGGER and not cleaned.get("trigger"):
            self.add_error("trigger", _("Choose what triggers the campaign."))
        if kind == Campaign.Kind.RECURRING:
            if not cleaned.get("recurrence"):
                self.add_error("recurrence", _("Choose how often it repeats."))
            if cleaned.get("recurrence_time") is None:
                self.add_error("recurrence_time", _("Choose the time of day each run starts."))
        if kind != Campaign.Kind.ONE_OFF and cleaned.get("audience_kind") == "list":
            self.add_error("audience_kind", _("Triggered and recurring campaigns use a segment."))
        others = [cleaned.get(name) for name in ("variant_b", "variant_c", "variant_d")]
        chosen = [pk for pk in others if pk]
        templates = MessageTemplate.objects.in_bulk(chosen) if chosen else {}
        cleaned["variant_templates"] = [templates[pk] for pk in chosen if pk in templates]
        if (cleaned.get("ab_mode") or "none") != "none" and not cleaned["variant_templates"]:
            self.add_error("variant_b", _("A test needs a second variant: pick its template."))
        window = (cleaned.get("send_window_start"), cleaned.get("send_window_end"))
        if (window[0] is None) != (window[1] is None):
            self.add_error("send_window_end", _("Give both ends of the send window, or neither."))
        elif window[0] is not None and window[0] == window[1]:
            self.add_error("send_window_end", _("The window must not be empty."))
        return cleaned

    def lifecycle(self) -> dict:
        """The campaign fields of kind, trigger, recurrence and caps, as save_draft takes them."""
        data = self.cleaned_data
        kind = data["kind"]
        return {
            "kind": kind,
            "trigger": data.get("trigger") or "" if kind == Campaign.Kind.TRIGGER else "",
            "trigger_delay_minutes": data.get("trigger_delay_minutes") or 0,
            "trigger_days": data.get("trigger_days") or 0,
            "trigger_local_hour": data.get("trigger_local_hour"),
            "recurrence": data.get("recurrence") or "" if kind == Campaign.Kind.RECURRING else "",
            "recurrence_time": data.get("recurrence_time"),
            "recurrence_day": data.get("recurrence_day"),
            "cap_per_day": data.get("cap_per_day"),
            "cap_per_week": data.get("cap_per_week"),
            "cap_min_gap_minutes": data.get("cap_min_gap_minutes"),
            "ab_mode": data.get("ab_mode") or Campaign.Testing.NONE,
            "ab_test_percent": data.get("ab_test_percent") or 20,
            "ab_wait_minutes": data.get("ab_wait_minutes") or 240,
            "ab_metric": data.get("ab_metric") or Campaign.WinnerMetric.CLICK,
            "holdout_percent": data.get("holdout_percent") or 0,
            "holdout_days": data.get("holdout_days") or 7,
            "track_links": bool(data.get("track_links")),
        }

    def in_operator_time(self, value: datetime) -> datetime:
        zone = zoneinfo.ZoneInfo(self.operator.time_zone)
        return value.replace(tzinfo=None).replace(tzinfo=zone)
