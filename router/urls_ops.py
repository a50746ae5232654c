from django.urls import path

from router import ops

urlpatterns = [path("metrics", ops.metrics_view, name="metrics")]
