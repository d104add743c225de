import json

from django import forms
from django.contrib import admin

from clients.models import Operator
from clients.tenancy import OperatorScopedAdmin
from providers.models import ChannelRoute, ProviderAccount


def mask_secret(value) -> str:
    text = str(value)
    if len(text) <= 4:
        return "•" * len(text)
    return "•" * min(len(text) - 2, 8) + text[-2:]


def masked_credentials(credentials: dict) -> dict:
    return {key: mask_secret(value) for key, value in (credentials or {}).items()}


class ProviderAccountForm(forms.ModelForm):
    """Credentials are write-only: the form never echoes secrets back to the browser."""

    base_url = forms.URLField(required=False, assume_scheme="https")
    new_credentials = forms.JSONField(
        required=False,
        label="Credentials",
        help_text='JSON, e.g. {"login": "…", "password": "…"}. Leave empty to keep the current ones.',
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    class Meta:
        model = ProviderAccount
        exclude = ["credentials"]  # noqa: DJ006 - write-only secrets, see new_credentials

    def save(self, commit=True):
        account = super().save(commit=False)
        new_credentials = self.cleaned_data.get("new_credentials")
        if new_credentials:
            if not isinstance(new_credentials, dict):
                raise forms.ValidationError("Credentials must be a JSON object.")
            account.credentials = new_credentials
        if commit:
            account.save()
        return account


class ChannelRouteInline(admin.TabularInline):
    model = ChannelRoute
    fk_name = "account"
    fields = ["channel", "priority", "cost_per_part", "operator"]
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # As in OperatorScopedAdmin: staff pick only operators they work in.
        if db_field.name == "operator" and not request.user.is_superuser:
            kwargs["queryset"] = Operator.objects.filter(members__user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ProviderAccount)
class ProviderAccountAdmin(OperatorScopedAdmin):
    form = ProviderAccountForm
    list_display = [
        "name",
        "backend",
        "operator",
        "channels",
        "max_batch",
        "rate_limit_per_second",
        "cost_per_part",
        "currency",
        "enabled",
    ]
    list_filter = ["backend", "enabled", "operator"]
    list_select_related = ["operator"]
    search_fields = ["name"]
    readonly_fields = ["current_credentials", "created_at", "updated_at"]
    inlines = [ChannelRouteInline]

    @admin.display(description="Current credentials")
    def current_credentials(self, obj):
        return json.dumps(masked_credentials(obj.credentials), ensure_ascii=False)


@admin.register(ChannelRoute)
class ChannelRouteAdmin(OperatorScopedAdmin):
    list_display = ["operator", "channel", "priority", "account", "cost_per_part"]
    list_filter = ["channel", "operator"]
    list_select_related = ["operator", "account"]
    search_fields = ["account__name"]
    autocomplete_fields = ["account"]
