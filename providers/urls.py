from django.urls import path

from providers.webhooks import replies_webhook, webhook

app_name = "providers"

urlpatterns = [
    path("webhooks/<str:backend>/<int:account_id>/<str:secret>/", webhook, name="webhook"),
    path(
        "webhooks/<str:backend>/<int:account_id>/<str:secret>/replies/",
        replies_webhook,
        name="replies-webhook",
    ),
]
