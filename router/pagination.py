"""Lists are paged 100 at a time; `page` must be a page number (1 or more), else 400."""

from rest_framework.pagination import PageNumberPagination

from router.errors import ApiError


class StrictPageNumberPagination(PageNumberPagination):
    def check_page(self, request) -> None:
        """400 unless `page` is absent or a page number; checked for every request of a list (a CSV export too)."""
        number = request.query_params.get(self.page_query_param)
        if number is not None and not (number.isascii() and number.isdigit() and int(number) >= 1):
            raise ApiError("invalid_request", f"page must be a page number, 1 or more; got {number[:20]!r}.")

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
