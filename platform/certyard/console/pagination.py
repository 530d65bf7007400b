"""Paging without counting: one row more than a page tells whether another page follows.

Django's Paginator counts the whole queryset to validate page numbers; on an
inventory of hundreds of thousands of certificates that COUNT costs more than the
page itself. A list that only offers "previous" and "next" does not need it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet


@dataclass(frozen=True, slots=True)
class SlicePage:
    number: int
    object_list: Sequence[Any]
    has_next: bool
    size: int = 50

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def start_index(self) -> int:
        """The 1-based position of the first row on this page (0 when the page is empty)."""
        return 0 if not self.object_list else (self.number - 1) * self.size + 1

    @property
    def end_index(self) -> int:
        return (self.number - 1) * self.size + len(self.object_list)


def slice_page(queryset: QuerySet[Any], *, number: int, size: int = 50) -> SlicePage:
    """Page ``number`` (from 1) of an ordered queryset, in one query of ``size + 1`` rows."""
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    return SlicePage(number=number, object_list=rows[:size], has_next=len(rows) > size, size=size)
