"""List filters (django-filter) that refuse a filter sent empty (`?outcome=`) rather than ignore it, and
a yes/no filter that is not `true` or `false`: a request that asks for something and silently gets
everything (or what "1" was guessed to mean) is a wrong answer."""

from django_filters.rest_framework import BooleanFilter, DjangoFilterBackend

from router.errors import ApiError


class StrictFilterBackend(DjangoFilterBackend):
    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            empty = sorted(name for name in filterset.filters if request.query_params.get(name, None) == "")
            if empty:
                raise ApiError("invalid_request", f"{', '.join(empty)}: a filter may not be empty; leave it out to match everything.")
            for name, field in filterset.filters.items():
                if isinstance(field, BooleanFilter) and request.query_params.get(name, "true") not in ("true", "false"):
                    raise ApiError("invalid_request", f"{name} must be true or false.")
        return filterset
