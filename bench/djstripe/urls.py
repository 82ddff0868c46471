"""dj-stripe's own URLconf at /stripe/, as its docs say to wire it; the webhook is /stripe/webhook/<uuid>/."""
from django.http import JsonResponse
from django.urls import include, path


def healthz(request):
    """For the harness's start-up check."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("healthz", healthz),
]
