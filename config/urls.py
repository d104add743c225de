from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from campaigns import views as campaign_views
from config import views
from config.lcmanager import views as lcmanager

admin.site.site_header = "Cascade"
admin.site.site_title = "Cascade"
admin.site.index_title = "Messaging for loyalty programs"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("providers/", include("providers.urls")),
    path(
        "api/marketing/SendMessageProcess",
        lcmanager.SendMessageProcessView.as_view(),
        name="send-message-process",
    ),
    path(
        "api/client/ClientUpdateCommunication",
        lcmanager.ClientUpdateCommunicationView.as_view(),
        name="client-update-communication",
    ),
    path(
        "api/client/ClientEvent",
        lcmanager.ClientEventView.as_view(),
        name="client-event",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file (?script), so the page
    # runs under the same Content-Security-Policy as every other: no inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/marketing/MessageStatus",
        lcmanager.MessageStatusView.as_view(),
        name="message-status",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("operator/", views.switch_operator, name="switch-operator"),
    # Django's set_language: POST language (and next); the choice is kept in a cookie.
    path("i18n/", include("django.conf.urls.i18n")),
    # gettext() for static/cascade/*.js (the djangojs catalog), in the page's language.
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("campaigns/", include("campaigns.urls")),
    path("clients/", include("clients.urls")),
    path("l/<str:code>", campaign_views.follow_link, name="tracked-link"),
    path("u/<str:token>", campaign_views.unsubscribe_link, name="unsubscribe"),
    path("healthz", views.healthz, name="healthz"),
    path("", views.home, name="home"),
]
