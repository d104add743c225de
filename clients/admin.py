from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from clients import services
from clients.channels import CONSENT_FLAGS, PROMOTIONAL_CONSENT_BY_CHANNEL, Channel
from clients.models import (
    ApiCredential,
    Card,
    Client,
    ConsentChange,
    Lead,
    MessengerChat,
    Operator,
    OperatorMember,
    PointOfSale,
    Subscriber,
    Tag,
)
from clients.phones import normalize_phone
from clients.tenancy import OperatorScopedAdmin


class OperatorMemberInline(admin.TabularInline):
    model = OperatorMember
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Operator)
class OperatorAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "time_zone", "default_region", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "code"]
    inlines = [OperatorMemberInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(members__user=request.user)


@admin.register(PointOfSale)
class PointOfSaleAdmin(OperatorScopedAdmin):
    list_display = ["code", "name", "city", "time_zone", "operator", "is_active"]
    list_filter = ["operator", "is_active"]
    list_select_related = ["operator"]
    search_fields = ["code", "name", "city"]


@admin.register(Tag)
class TagAdmin(OperatorScopedAdmin):
    list_display = ["name", "operator"]
    list_filter = ["operator"]
    list_select_related = ["operator"]
    search_fields = ["name"]


class ConsentChangeInline(admin.TabularInline):
    model = ConsentChange
    fields = [
        "changed_at",
        "flag",
        "old_value",
        "new_value",
        "source",
        "changed_by",
        "api_credential",
        "reason",
    ]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-changed_at", "-id"]
    verbose_name_plural = _("Consent history")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("changed_by", "api_credential")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CardInline(admin.TabularInline):
    model = Card
    fields = ["number", "bonus", "bonus_expires_at", "status", "issued_at"]
    readonly_fields = ["issued_at"]
    extra = 0
    show_change_link = True


class ClientAdminForm(forms.ModelForm):
    # Wider than the stored 15 digits: people type "+7 (912) 345-67-89".
    phone = forms.CharField(
        max_length=40, required=False, help_text=Client._meta.get_field("phone").help_text
    )
    consent_reason = forms.CharField(
        required=False,
        max_length=500,
        label=_("Reason for a consent change"),
        help_text=_("Written to the consent history with your name."),
    )

    class Meta:
        model = Client
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what is shown

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The page posts back the consent it showed, so `changed_data` names only the flags
        # this admin changed, not those the API changed while the form was open.
        for flag in CONSENT_FLAGS:
            if flag in self.fields:
                self.fields[flag].show_hidden_initial = True
        if self.instance.phone and "phone" in self.fields:
            # Stored digits are E.164 without the '+'. Shown bare, a saved-again foreign
            # number could read as a Russian one (Norway's 4721234567 is also a Belgorod
            # number); with the '+' it reads back unchanged.
            self.initial["phone"] = f"+{self.instance.phone}"

    def clean_phone(self):
        phone = self.cleaned_data.get("phone", "")
        if not phone:
            return ""
        operator = self.cleaned_data.get("operator")
        region = operator.default_region if operator else None
        return normalize_phone(phone, region=region)


@admin.register(Client)
class ClientAdmin(OperatorScopedAdmin):
    form = ClientAdminForm
    list_display = [
        "id",
        "__str__",
        "phone",
        "email",
        "operator",
        "allow_sms",
        "allow_email",
        "allow_push",
        "allow_email_online_cheque",
        "created_at",
    ]
    list_display_links = ["id", "__str__"]
    list_filter = ["operator", *CONSENT_FLAGS]
    list_select_related = ["operator"]
    search_fields = ["^phone", "email", "last_name", "first_name"]
    autocomplete_fields = ["registered_pos", "tags"]
    readonly_fields = ["created_at", "updated_at", "consent_rules"]
    show_full_result_count = False  # an exact COUNT(*) over 100k+ rows on every page is wasted
    inlines = [CardInline, ConsentChangeInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "operator",
                    "phone",
                    "email",
                    "first_name",
                    "last_name",
                    "middle_name",
                    "birth_date",
                    "registered_pos",
                    "tags",
                    "registered_at",
                    "last_purchase_at",
                    "time_zone",
                ]
            },
        ),
        (
            _("Messenger addresses"),
            {"fields": ["push_tokens", "viber_id", "telegram_chat_id", "vk_id"]},
        ),
        (_("Consent"), {"fields": [*CONSENT_FLAGS, "consent_reason", "consent_rules"]}),
        (_("Record"), {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description=_("Which consent each channel needs"))
    def consent_rules(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            (
                (Channel(channel).label, flag)
                for channel, flag in PROMOTIONAL_CONSENT_BY_CHANNEL.items()
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th></tr>{}"
            "<tr><td>{}</td><td>allow_email_online_cheque</td></tr>"
            "<tr><td>{}</td><td>{}</td></tr></table>",
            _("channel"),
            _("promotional messages need"),
            rows,
            _("Online cheques"),
            _("Registration codes"),
            _("no consent (service message)"),
        )

    def save_model(self, request, obj, form, change):
        # Consent goes through the service so the history is written; the rest of
        # the row is saved as usual.
        changed = [flag for flag in CONSENT_FLAGS if flag in form.changed_data]
        wanted = {flag: form.cleaned_data[flag] for flag in changed}
        reason = form.cleaned_data.get("consent_reason", "")
        if change:
            # Only the service writes the consent columns (locked, with history): the row's
            # save leaves them out, so an API change made meanwhile is not overwritten.
            fields = [f.name for f in obj._meta.concrete_fields if not f.primary_key]
            obj.save(update_fields=[name for name in fields if name not in CONSENT_FLAGS])
            services.change_consent(
                client_id=obj.pk,
                flags=wanted,
                source=ConsentChange.Source.ADMIN,
                changed_by=request.user,
                reason=reason,
            )
            obj.refresh_from_db(fields=CONSENT_FLAGS)
        else:
            super().save_model(request, obj, form, change)
            services.record_initial_consent(
                client=obj,
                source=ConsentChange.Source.ADMIN,
                changed_by=request.user,
                reason=reason,
            )


@admin.register(ConsentChange)
class ConsentChangeAdmin(OperatorScopedAdmin):
    list_display = [
        "changed_at",
        "client",
        "flag",
        "old_value",
        "new_value",
        "source",
        "changed_by",
        "reason",
    ]
    list_filter = ["source", "flag", "operator"]
    list_select_related = ["client", "changed_by"]
    search_fields = ["^client__phone", "reason"]
    raw_id_fields = ["client"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Card)
class CardAdmin(OperatorScopedAdmin):
    list_display = [
        "number",
        "client",
        "bonus",
        "bonus_expires_at",
        "status",
        "operator",
        "issued_at",
    ]
    list_filter = ["status", "operator"]
    list_select_related = ["client", "operator"]
    search_fields = ["=number", "^client__phone"]
    raw_id_fields = ["client"]
    show_full_result_count = False


@admin.register(Lead)
class LeadAdmin(OperatorScopedAdmin):
    list_display = ["id", "name", "phone", "email", "source", "operator", "created_at"]
    list_filter = ["operator"]
    list_select_related = ["operator"]
    search_fields = ["^phone", "email", "name"]
    raw_id_fields = ["client"]
    autocomplete_fields = ["point_of_sale"]


@admin.register(Subscriber)
class SubscriberAdmin(OperatorScopedAdmin):
    list_display = [
        "id",
        "messenger",
        "external_id",
        "display_name",
        "client",
        "is_subscribed",
        "operator",
    ]
    list_filter = ["messenger", "is_subscribed", "operator"]
    list_select_related = ["client", "operator"]
    search_fields = ["external_id", "^phone", "display_name"]
    raw_id_fields = ["client"]


@admin.register(MessengerChat)
class MessengerChatAdmin(OperatorScopedAdmin):
    list_display = ["title", "messenger", "chat_id", "is_active", "operator"]
    list_filter = ["messenger", "is_active", "operator"]
    list_select_related = ["operator"]
    search_fields = ["title", "=chat_id"]


@admin.register(ApiCredential)
class ApiCredentialAdmin(OperatorScopedAdmin):
    list_display = [
        "name",
        "kind",
        "operator",
        "secret_hint",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["kind", "operator"]
    list_select_related = ["operator"]
    search_fields = ["name", "secret_hint"]
    fields = [
        "operator",
        "name",
        "kind",
        "secret_hint",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["secret_hint", "created_by", "created_at", "last_used_at", "revoked_at"]
        return [
            "operator",
            "kind",
            "secret_hint",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.issue_credential(
            operator=obj.operator, name=obj.name, kind=obj.kind, created_by=request.user
        )
        obj.pk = issued.credential.pk
        obj.secret_hint = issued.credential.secret_hint
        messages.warning(
            request,
            _(
                "New %(kind)s for %(operator)s: %(secret)s "
                "— copy it now, it is not stored and will not be shown again."
            )
            % {
                "kind": issued.credential.get_kind_display().lower(),
                "operator": obj.operator,
                "secret": issued.secret,
            },
        )

    @admin.action(description=_("Revoke selected credentials"))
    def revoke(self, request, queryset):
        for credential_id in queryset.values_list("pk", flat=True):
            services.revoke_credential(credential_id=credential_id)
        self.message_user(request, _("Revoked."))
