from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from campaigns import services
from campaigns.models import (
    AudienceListEntry,
    Campaign,
    Delivery,
    DeliveryEvent,
    InboundReply,
    Message,
    MessageTemplate,
    PartnerSend,
)
from clients.tenancy import OperatorScopedAdmin


@admin.register(MessageTemplate)
class MessageTemplateAdmin(OperatorScopedAdmin):
    list_display = ["name", "operator", "title", "button_caption", "updated_at"]
    list_filter = ["operator"]
    list_select_related = ["operator"]
    search_fields = ["name", "title", "text"]
    fieldsets = [
        (None, {"fields": ["operator", "name", "title", "text"]}),
        ("SMS", {"fields": ["sms_text"]}),
        ("Viber", {"fields": ["viber_text", "button_caption", "button_url", "image_url"]}),
        (_("Email"), {"fields": ["html"]}),
        ("VK", {"fields": ["vk_template_id"]}),
    ]


class AudienceListEntryInline(admin.TabularInline):
    model = AudienceListEntry
    fields = ["client", "phone", "card_number", "variables"]
    raw_id_fields = ["client"]
    extra = 0
    max_num = 200
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("client")


@admin.register(Campaign)
class CampaignAdmin(OperatorScopedAdmin):
    list_display = [
        "name",
        "operator",
        "state",
        "channels",
        "audience_kind",
        "scheduled_at",
        "created_at",
    ]
    list_filter = ["state", "audience_kind", "source", "operator"]
    list_select_related = ["operator", "template"]
    search_fields = ["name"]
    autocomplete_fields = ["template"]
    readonly_fields = [
        "created_by",
        "api_credential",
        "created_at",
        "updated_at",
        "launched_at",
        "finished_at",
    ]
    date_hierarchy = "created_at"
    actions = ["launch", "pause", "resume", "cancel"]

    def _control(self, request, queryset, action, done_message):
        done = 0
        for campaign in queryset:
            try:
                action(campaign_id=campaign.pk)
                done += 1
            except ValidationError as error:
                self.message_user(
                    request, f"{campaign.name}: {' '.join(error.messages)}", messages.ERROR
                )
        if done:
            self.message_user(request, done_message % {"count": done}, messages.SUCCESS)

    # English says "campaign(s)" for every count; the plural forms are for the translations.
    @admin.action(description=_("Launch selected campaigns now"), permissions=["change"])
    def launch(self, request, queryset):
        self._control(
            request,
            queryset,
            services.launch,
            ngettext_lazy(
                "Launched %(count)d campaign(s).", "Launched %(count)d campaign(s).", "count"
            ),
        )

    @admin.action(description=_("Pause selected campaigns"), permissions=["change"])
    def pause(self, request, queryset):
        self._control(
            request,
            queryset,
            services.pause,
            ngettext_lazy(
                "Paused %(count)d campaign(s).", "Paused %(count)d campaign(s).", "count"
            ),
        )

    @admin.action(description=_("Resume selected campaigns"), permissions=["change"])
    def resume(self, request, queryset):
        self._control(
            request,
            queryset,
            services.resume,
            ngettext_lazy(
                "Resumed %(count)d campaign(s).", "Resumed %(count)d campaign(s).", "count"
            ),
        )

    @admin.action(description=_("Cancel selected campaigns"), permissions=["change"])
    def cancel(self, request, queryset):
        self._control(
            request,
            queryset,
            services.cancel,
            ngettext_lazy(
                "Cancelled %(count)d campaign(s).", "Cancelled %(count)d campaign(s).", "count"
            ),
        )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            obj.source = Campaign.Source.ADMIN
        super().save_model(request, obj, form, change)


@admin.register(AudienceListEntry)
class AudienceListEntryAdmin(OperatorScopedAdmin):
    list_display = ["id", "campaign", "client", "phone", "card_number"]
    list_select_related = ["campaign", "client"]
    raw_id_fields = ["campaign", "client"]
    search_fields = ["^phone", "=card_number"]
    show_full_result_count = False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = [
        "step",
        "channel",
        "account",
        "status",
        "provider_message_id",
        "parts",
        "price",
        "error_message",
    ]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account")


@admin.register(Message)
class MessageAdmin(OperatorScopedAdmin):
    list_display = ["id", "campaign", "client", "phone", "email", "purpose", "status", "created_at"]
    list_filter = ["status", "purpose", "operator"]
    list_select_related = ["campaign", "client"]
    search_fields = ["=id", "^phone", "email"]
    raw_id_fields = ["campaign", "client", "api_credential", "template"]
    show_full_result_count = False
    inlines = [DeliveryInline]


@admin.register(PartnerSend)
class PartnerSendAdmin(OperatorScopedAdmin):
    """The partner API's accepted calls: what each MessageId points at. Read-only."""

    list_display = ["id", "api_credential", "message", "campaign", "created_at"]
    list_select_related = ["api_credential", "message", "campaign"]
    list_filter = ["operator"]
    search_fields = ["=id", "=message__id", "=campaign__id"]
    raw_id_fields = ["api_credential", "message", "campaign"]
    readonly_fields = ["request_digest", "created_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryEventInline(admin.TabularInline):
    model = DeliveryEvent
    fields = ["received_at", "status", "provider_status", "source", "occurred_at", "payload"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(Delivery)
class DeliveryAdmin(OperatorScopedAdmin):
    list_display = [
        "id",
        "message_id",
        "campaign",
        "step",
        "channel",
        "account",
        "status",
        "provider_message_id",
        "parts",
        "price",
        "updated_at",
    ]
    list_filter = ["status", "channel", "account", "operator"]
    list_select_related = ["account", "campaign"]
    search_fields = ["=provider_message_id", "=idempotency_key", "^message__phone"]
    raw_id_fields = ["message", "campaign", "account"]
    show_full_result_count = False
    inlines = [DeliveryEventInline]


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(OperatorScopedAdmin):
    list_display = [
        "id",
        "delivery_id",
        "status",
        "provider_status",
        "source",
        "occurred_at",
        "received_at",
    ]
    list_filter = ["status", "source"]
    raw_id_fields = ["delivery"]
    search_fields = ["=delivery__id", "provider_status"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InboundReply)
class InboundReplyAdmin(OperatorScopedAdmin):
    """Clients' replies as the gateways forwarded them. Read-only: they are what was said."""

    list_display = ["id", "received_at", "phone", "channel", "text", "is_opt_out", "campaign"]
    list_filter = ["is_opt_out", "channel"]
    list_select_related = ["campaign"]
    search_fields = ["^phone", "text"]
    raw_id_fields = ["client", "message", "campaign", "account"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
