"""Paging without counting: one row more than a page tells whether another page follows.

Django's Paginator counts the whole queryset to validate page numbers; on an
inventory of hundreds of thousands of certificates that COUNT costs more than the
page itself. A list that only offers "previous" and "next" does not need it.

The label above a page ("Certificates 51-100 of 240", an en dash in the page) says how
many rows there are when that is known for free: on the last page, where the rows
fetched tell it. A list may ask for a bounded count (``count_up_to``): a LIMITed
subquery, never more rows than the bound, and "of more than 1,000" past it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

EN_DASH = "\u2013"  # between the first and last row's numbers (ruff flags the literal)


@dataclass(frozen=True, slots=True)
class SlicePage:
    number: int
    object_list: Sequence[Any]
    has_next: bool
    size: int = 50
    # How many rows the whole list has, when known; else at least ``more_than`` + 1.
    total: int | None = None
    more_than: int | None = None

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

    def label(self, singular: str, plural: str | None = None) -> str:
        """What the page shows, in words: "1 certificate", "16 certificates" (all on one
        page), "Certificates 17-32 of 40" (an en dash), "Certificate 41 of 41",
        "Certificates 1-50 of more than 1,000"; "" for an empty page (the list says why
        it is empty).

        ``plural`` defaults to ``singular`` + "s" (give "entries" for "entry")."""
        if not self.object_list:
            return ""
        plural = plural or f"{singular}s"
        start, end = self.start_index, self.end_index
        if self.total is not None and start == 1 and not self.has_next:
            return f"{self.total:,} {singular if self.total == 1 else plural}"
        if start == end:
            shown = f"{_capitalised(singular)} {start:,}"
        else:
            shown = f"{_capitalised(plural)} {start:,}{EN_DASH}{end:,}"
        if self.total is not None:
            return f"{shown} of {self.total:,}"
        return f"{shown} of more than {self.more_than if self.more_than is not None else end:,}"


def _capitalised(noun: str) -> str:
    return noun[:1].upper() + noun[1:]


def slice_page(
    queryset: QuerySet[Any], *, number: int, size: int = 50, count_up_to: int | None = None
) -> SlicePage:
    """Page ``number`` (from 1) of an ordered queryset, in one query of ``size + 1`` rows.

    The total is known without counting when this page is the last one. ``count_up_to``
    asks for it on other pages too, with one more query that reads at most that many rows
    (ordering dropped, as it does not change a count); past it, the page knows only that
    there are more."""
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    has_next = len(rows) > size
    page_rows = rows[:size]
    total: int | None = None
    more_than: int | None = None
    if page_rows and not has_next:
        total = offset + len(page_rows)
    elif has_next and count_up_to is not None:
        counted = queryset.order_by()[: count_up_to + 1].count()
        # Rows added or deleted between the two queries: the page itself is the truth.
        counted = max(counted, offset + size + 1)
        if counted > count_up_to:
            more_than = max(count_up_to, offset + size)
        else:
            total = counted
    return SlicePage(
        number=number,
        object_list=page_rows,
        has_next=has_next,
        size=size,
        total=total,
        more_than=more_than,
    )
