from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Cascade"
admin.site.site_title = "Cascade"
admin.site.index_title = "Messaging for loyalty programs"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("providers/", include("providers.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
