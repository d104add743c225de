"""Forms of the client pages: the consent change and the import upload."""

from __future__ import annotations

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from clients.channels import CONSENT_FLAGS
from clients.importing import MAX_BYTES

# How a flag is named in messages and on the pages: "SMS consent turned off".
FLAG_LABELS = {
    "allow_sms": "SMS",
    "allow_email": _("Email"),
    "allow_push": _("Push"),
    "allow_email_online_cheque": _("Online cheques by email"),
}


class ConsentForm(forms.Form):
    """The four consent flags and the reason that goes into the history.

    The page also posts the values it showed (`seen_<flag>`), so a flag the
    user did not touch is left alone even if the API changed it meanwhile.
    """

    allow_sms = forms.BooleanField(required=False, label=_("SMS (and phone messengers)"))
    allow_email = forms.BooleanField(required=False, label=_("Email"))
    allow_push = forms.BooleanField(required=False, label=_("Push"))
    allow_email_online_cheque = forms.BooleanField(
        required=False, label=_("Online cheques by email")
    )
    reason = forms.CharField(
        min_length=3,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Written to the consent history with your name, e.g. “Asked by phone”."),
    )

    def flag_fields(self):
        return [self[flag] for flag in CONSENT_FLAGS]

    def shown(self) -> dict[str, bool]:
        """The values the user saw: posted back by the page, else the current ones."""
        shown = {}
        for flag in CONSENT_FLAGS:
            seen = self.data.get(f"seen_{flag}")
            shown[flag] = seen == "1" if seen in ("0", "1") else bool(self.initial.get(flag))
        return shown

    def seen_inputs(self) -> list[tuple[str, str]]:
        return [(f"seen_{flag}", "1" if value else "0") for flag, value in self.shown().items()]

    def changed_flags(self) -> dict[str, bool]:
        """The flags the user set differently from what the page showed them."""
        return {
            flag: self.cleaned_data[flag]
            for flag, shown in self.shown().items()
            if self.cleaned_data[flag] != shown
        }


class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("File"),
        help_text=format_lazy(
            _(
                "A .csv (UTF-8, comma or semicolon) or .xlsx file with a header row, up to {size} MB."
            ),
            size=MAX_BYTES // 2**20,
        ),
        widget=forms.FileInput(attrs={"accept": ".csv,.xlsx"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".csv", ".xlsx")):
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                _("The file is over %(size)d MB; split it into smaller files.")
                % {"size": MAX_BYTES // 2**20}
            )
        return upload
