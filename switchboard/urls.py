from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("router.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("router.urls_ops")),
    path("", include("dashboard.urls")),
]

handler400 = "router.errors.bad_request"
handler403 = "router.errors.permission_denied"
handler404 = "router.errors.page_not_found"
handler500 = "router.errors.server_error"
