import json

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clients.models import Operator
from clients.tenancy import OperatorScopedAdmin
from providers import services
from providers.models import ChannelRoute, ProviderAccount
from providers.registry import BACKENDS, backend_class


def mask_secret(value) -> str:
    text = str(value)
    if len(text) <= 4:
        return "•" * len(text)
    return "•" * min(len(text) - 2, 8) + text[-2:]


def masked_credentials(credentials: dict) -> dict:
    return {key: mask_secret(value) for key, value in (credentials or {}).items()}


class ProviderAccountForm(forms.ModelForm):
    """Credentials and callback secrets are write-only: the form never echoes them to the browser.

    Callback secrets are not typed in at all: they are generated, and rotated
    with the two checkboxes (or the actions on the list).
    """

    base_url = forms.URLField(required=False, assume_scheme="https")
    new_credentials = forms.JSONField(
        required=False,
        label=gettext_lazy("Credentials"),
        help_text=gettext_lazy(
            'JSON, e.g. {"login": "…", "password": "…"}. Leave empty to keep the current ones.'
        ),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    add_callback_secret = forms.BooleanField(
        required=False,
        label=gettext_lazy("Add a new callback secret"),
        help_text=gettext_lazy(
            "New callback URLs use it at once; the old secrets are still accepted until "
            "retired. The new callback URL is shown once, after saving."
        ),
    )
    retire_old_callback_secrets = forms.BooleanField(
        required=False,
        label=gettext_lazy("Retire old secrets"),
        help_text=gettext_lazy(
            "Keep only the current secret: callbacks signed with the others are refused. "
            "Together with the box above only the new one is kept (after a leak)."
        ),
    )

    class Meta:
        model = ProviderAccount
        exclude = ["credentials", "callback_secrets"]  # noqa: DJ006 - write-only, see above

    def save(self, commit=True):
        account = super().save(commit=False)
        new_credentials = self.cleaned_data.get("new_credentials")
        if new_credentials:
            if not isinstance(new_credentials, dict):
                raise forms.ValidationError(_("Credentials must be a JSON object."))
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
    readonly_fields = [
        "current_credentials",
        "masked_callback_url",
        "callback_secret_hints",
        "created_at",
        "updated_at",
    ]
    inlines = [ChannelRouteInline]
    # Not named like the form's checkboxes: a view-only page would look those names up here.
    actions = ["add_callback_secret_to_selected", "retire_old_callback_secrets_of_selected"]

    @admin.display(description=gettext_lazy("Current credentials"))
    def current_credentials(self, obj):
        return json.dumps(masked_credentials(obj.credentials), ensure_ascii=False)

    @admin.display(description=gettext_lazy("Callback URL"))
    def masked_callback_url(self, obj):
        url = obj.callback_url() if obj.pk else ""
        if not url:
            return _("None yet: a secret is generated when the account is saved.")
        current = obj.callback_secrets[0]
        masked = url.removesuffix(f"{current}/") + f"{services.secret_hint(current)}/"
        if obj.backend in BACKENDS and not backend_class(obj.backend).has_callbacks:
            return _(
                "%(url)s (not used: this gateway sends no callbacks, its statuses are polled)"
            ) % {"url": masked}
        return masked

    @admin.display(description=gettext_lazy("Callback secrets"))
    def callback_secret_hints(self, obj):
        hints = [services.secret_hint(secret) for secret in obj.callback_secrets or []]
        if not hints:
            return _("None")
        old = [_("%(hint)s (old, still accepted)") % {"hint": hint} for hint in hints[1:]]
        return ", ".join([_("%(hint)s (current)") % {"hint": hints[0]}, *old])

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fields
        # These only take input; a reader would see "None" in each.
        write_only = {"new_credentials", "add_callback_secret", "retire_old_callback_secrets"}
        return [field for field in fields if field not in write_only]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # Without a secret every callback is refused, so an account always gets one.
        if form.cleaned_data.get("add_callback_secret") or not obj.callback_secrets:
            obj.callback_secrets = services.add_callback_secret(account_id=obj.pk).callback_secrets
            self.show_new_callback_url(request, obj)
        if form.cleaned_data.get("retire_old_callback_secrets"):
            account = services.retire_old_callback_secrets(account_id=obj.pk)
            obj.callback_secrets = account.callback_secrets

    def show_new_callback_url(self, request, account):
        # The one moment the full secret is shown, as when a partner token is issued.
        messages.warning(
            request,
            _(
                "New callback URL for %(account)s: %(url)s — give it to the gateway "
                "now; it is not shown again (only its first characters are)."
            )
            % {"account": account, "url": account.callback_url()},
        )

    @admin.action(description=gettext_lazy("Add a new callback secret"), permissions=["change"])
    def add_callback_secret_to_selected(self, request, queryset):
        for account_id in queryset.values_list("pk", flat=True):
            account = services.add_callback_secret(account_id=account_id)
            hint = services.secret_hint(account.callback_secrets[0])
            self.log_change(request, account, f"Added a new callback secret {hint}")
            self.show_new_callback_url(request, account)

    @admin.action(description=gettext_lazy("Retire old callback secrets"), permissions=["change"])
    def retire_old_callback_secrets_of_selected(self, request, queryset):
        for account_id in queryset.values_list("pk", flat=True):
            account = services.retire_old_callback_secrets(account_id=account_id)
            hints = self.callback_secret_hints(account)
            self.log_change(request, account, f"Retired old callback secrets; kept {hints}")
        self.message_user(
            request, _("Old callback secrets retired; only the current one is accepted.")
        )


@admin.register(ChannelRoute)
class ChannelRouteAdmin(OperatorScopedAdmin):
    list_display = ["operator", "channel", "priority", "account", "cost_per_part"]
    list_filter = ["channel", "operator"]
    list_select_related = ["operator", "account"]
    search_fields = ["account__name"]
    autocomplete_fields = ["account"]
