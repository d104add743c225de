from django.urls import path

from clients import views

app_name = "clients"

urlpatterns = [
    path("", views.client_search, name="search"),
    path("import/", views.client_import, name="import"),
    path("import/errors.csv", views.import_errors, name="import-errors"),
    path("<int:pk>/", views.client_detail, name="detail"),
    path("<int:pk>/consent/", views.client_consent, name="consent"),
]
