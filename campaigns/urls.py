from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_edit, name="new"),
    path("audience-count/", views.audience_count, name="audience-count"),
    path("templates/", views.template_list, name="templates"),
    path("templates/new/", views.template_edit, name="template-new"),
    path("templates/<int:pk>/", views.template_edit, name="template-edit"),
    path("<int:pk>/", views.campaign_detail, name="detail"),
    path("<int:pk>/edit/", views.campaign_edit, name="edit"),
    path("<int:pk>/preview/", views.campaign_preview, name="preview"),
    path("<int:pk>/stats.json", views.campaign_stats, name="stats"),
    path("<int:pk>/series.json", views.campaign_series, name="series"),
    path("<int:pk>/replies/", views.reply_list, name="replies"),
    path("<int:pk>/messages/", views.message_list, name="messages"),
    path("<int:pk>/messages/<int:message_id>/", views.message_detail, name="message"),
    path("<int:pk>/export.csv", views.export_csv, name="export"),
    path("<int:pk>/variants.csv", views.export_variants_csv, name="export-variants"),
    path("<int:pk>/<str:action>/", views.campaign_action, name="action"),
]
