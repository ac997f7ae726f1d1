"""Offset/limit pagination: an iterator of pages, given a function that fetches one page.

Vendors that page by ``offset`` and ``limit`` (Equinix ``subscriptionData``) differ in how they report the
end (a total, a ``next`` link, a short page). `offset_pages` only needs each page's items and, when the
vendor gives it, the total; it computes the next offset itself (offset + items received), so a caller can
store `Page.next_offset` as its cursor after committing a page and resume from it later without missing
or repeating an item, as long as the vendor's offsets are stable (an append-only feed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of an offset/limit listing.

    Attributes:
        items: the items of this page, in the vendor's order.
        offset: the offset of the first item (the offset that was asked for).
        limit: the page size the vendor applied (may be smaller than the one asked for).
        total: the number of items the vendor reports in the whole listing, when it says.
    """

    items: Sequence[T]
    offset: int
    limit: int
    total: int | None = None

    @property
    def next_offset(self) -> int:
        """The offset just after this page: the cursor to store once the page is committed."""
        return self.offset + len(self.items)

    @property
    def is_last(self) -> bool:
        """True when no item follows this page (as far as the vendor said when it answered)."""
        if not self.items:
            return True
        if self.total is not None:
            return self.next_offset >= self.total
        return len(self.items) < self.limit


PageFetcher = Callable[[int, int], Page[T]]
"""Fetches the page at (offset, limit)."""


def offset_pages(
    fetch: PageFetcher[T], *, offset: int = 0, limit: int = 250, max_pages: int | None = None
) -> Iterator[Page[T]]:
    """Yield pages from `offset` on, until the listing is exhausted.

    Each page is fetched only when the previous one has been consumed, so a caller that stores
    `Page.next_offset` after processing each page never skips an item, even if it stops half-way.
    An empty last page is not yielded.

    Args:
        fetch: ``fetch(offset, limit)`` returns the page starting at `offset`.
        offset: where to start (a stored cursor, or 0).
        limit: the page size to ask for.
        max_pages: stop after this many pages (None: no limit).

    Raises:
        ValueError: a negative offset, or a limit below 1.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    pages = 0
    while max_pages is None or pages < max_pages:
        page = fetch(offset, limit)
        if not page.items:
            return
        pages += 1
        yield page
        if page.is_last:
            return
        offset = page.next_offset


__all__ = ["Page", "PageFetcher", "offset_pages"]
