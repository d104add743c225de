from django.urls import path

from providers.webhooks import webhook

app_name = "providers"

urlpatterns = [
    path("webhooks/<str:backend>/<int:account_id>/<str:secret>/", webhook, name="webhook"),
]
