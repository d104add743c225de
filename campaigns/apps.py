from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns and messages")

    def ready(self):
        # providers knows nothing of campaigns: the engine tells its inbox who applies
        # the gateways' reports. Imported here, once the app registry is ready (models).
        from campaigns.replies import record_replies  # as above
        from campaigns.statuses import apply_status_events  # as above
        from providers.inbox import register_reply_handler, register_status_handler  # as above

        register_status_handler(apply_status_events)
        register_reply_handler(record_replies)
