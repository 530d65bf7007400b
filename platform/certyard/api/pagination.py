"""Page-number pagination with a bounded page size.

The page and the page size are whole numbers from 1, and the schema says so: anything else
(``page_size=null``, ``page=0``, ``page_size=-5``, ``page=last``) is refused with 400 and
says which parameter was wrong, rather than quietly served as the default. A page past the
last one is 404. A page size above ``max_page_size`` is served as that many (a client
asking for "everything" still gets the most a page holds), as the schema describes.
"""

from typing import Any

from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

from certyard.api.errors import ApiError

# Past this, a page number names no page any table here has; refused like any bad number
# rather than handed to the database as a 20-digit OFFSET.
MAX_PAGE = 2**31 - 1


def _whole_number(request: Request, name: str, *, maximum: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    # Digits only: no sign, no spaces, no "1.0" or "1e3", which int() or a float would take.
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ApiError(
            f"{name} must be a whole number from 1",
            extra={"fields": {name: [f"a whole number from 1, not {raw[:40]!r}"]}},
        )
    value = int(raw)
    if maximum is not None and value > maximum:
        raise ApiError(
            f"{name} must be at most {maximum}",
            extra={"fields": {name: [f"at most {maximum}"]}},
        )
    return value


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    # Only numbers: the schema says page is an integer.
    last_page_strings = ()

    def get_page_size(self, request: Request) -> int:
        wanted = _whole_number(request, self.page_size_query_param, maximum=None)
        if wanted is None:
            return self.page_size
        return min(wanted, self.max_page_size)

    def get_page_number(self, request: Request, paginator: Paginator) -> int:
        return _whole_number(request, self.page_query_param, maximum=MAX_PAGE) or 1

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "The page, from 1; a page past the last one is 404.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page, from 1 (default {self.page_size}); "
                f"more than {self.max_page_size} are served as {self.max_page_size}.",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]
