"""List filters (django-filter) that refuse a filter sent empty (`?outcome=`) rather than ignore it: a
request that asks for something and silently gets everything is a wrong answer."""

from django_filters.rest_framework import DjangoFilterBackend

from router.errors import ApiError


class StrictFilterBackend(DjangoFilterBackend):
    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            empty = sorted(name for name in filterset.filters if request.query_params.get(name, None) == "")
            if empty:
                raise ApiError("invalid_request", f"{', '.join(empty)}: a filter may not be empty; leave it out to match everything.")
        return filterset
