"""``ListingStore``: a ``Store`` wrapper that answers ``head`` for *absent* keys from
one listing of their directory, once that directory is busy.

Why: before copying a target, the engine asks ``head(key)`` whether the destination
already holds it (a rerun after a kill must not upload again what is there). On a
local disk that is a ``stat``; on S3 it is one HEAD request per target. A first sync,
or a rerun after an interrupted first sync, asks that for every target of the
repository, and most answers are "absent". A ListObjectsV2 page answers the same
question for up to 1,000 keys in one request.

How it chooses, by count: the first ``threshold - 1`` ``head`` calls in a directory
(the key's prefix up to its last ``/``) go to the store as they are. The
``threshold``-th lists that directory once; from then on a key the listing did not
show (and this run did not write since) is answered "absent" without a request, and
a key it did show still gets a real ``head``, because a listing carries sizes but no
checksums and the engine needs the object's SHA-256 to trust it. So a listing can
only save requests: "present" always comes from the store itself, and a wrong
"absent" (an object that appeared behind our back, despite the destination lock)
costs one upload of verified bytes, never an unverified byte.

Why ``threshold`` = 32 by default: a LIST request costs as much as 12.5 HEADs on AWS
(``$0.005`` vs ``$0.0004`` per 1,000) and lists up to 1,000 keys, so listing a
directory pays for itself as soon as it spares a dozen HEADs. An incremental sync
heads a handful of new targets per directory and never lists; a first sync or a
resumed one heads hundreds or thousands per hash-bin directory, and after 32 HEADs
a directory is very likely one of those. Layouts with one target per directory
(PyPI's ``packages/ab/cd/<digest>/name``) never reach the threshold and stay on HEAD,
which is right for them: a listing would return the same single key.

Memory and cost stay bounded whatever the repository's size: every key a listing
reads (objects in subdirectories included, since S3 prefixes are not directories)
counts against ``max_keys`` (default 100,000, about 10 MB of key strings) for the
whole run. A listing that would exceed what is left is abandoned and its directory
stays on HEAD; once the budget is spent, everything does. At most
``max_keys / 1000`` + (directories listed) LIST pages are read in a run.

What it does not do: cache ``head`` answers for present keys, list anything but the
directories ``head`` is called in (never the bookkeeping under ``.tuf-mirror/``,
which listings do not show), or change any other method (``DelegatingStore``
passes them to the wrapped store as they are). It assumes it is the only writer of
the destination while it lives (the destination lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mirror.log import log
from mirror.storage.base import ObjectInfo, PutOptions, Store, is_internal_key, validate_key
from mirror.storage.delegating import DelegatingStore

__all__ = ["LIST_THRESHOLD", "MAX_LISTED_KEYS", "ListingStore"]

#: ``head`` calls in one directory after which that directory is listed once.
LIST_THRESHOLD = 32
#: Keys read by all listings of one run, in total (memory and cost bound).
MAX_LISTED_KEYS = 100_000


@dataclass(slots=True)
class _Listing:
    """One directory's listing: set when ``ready`` is."""

    ready: trio.Event = field(default_factory=trio.Event)
    #: keys present when listed; None when the listing could not be used
    keys: set[str] | None = None
    #: keys this run wrote in the directory (during or after the listing)
    written: set[str] = field(default_factory=set)

    def absent(self, key: str) -> bool:
        return self.keys is not None and key not in self.keys and key not in self.written


class ListingStore(DelegatingStore):
    """A ``Store`` that lists busy directories instead of heading every absent key;
    see the module docstring. ``listed`` names the directories listed so far."""

    def __init__(
        self,
        store: Store,
        *,
        threshold: int | None = None,
        max_keys: int | None = None,
    ) -> None:
        # Module defaults read at construction time, so a test can lower them.
        threshold = LIST_THRESHOLD if threshold is None else threshold
        max_keys = MAX_LISTED_KEYS if max_keys is None else max_keys
        if threshold < 1 or max_keys < 0:
            raise ValueError("threshold must be >= 1 and max_keys >= 0")
        super().__init__(store)
        self.listed: list[str] = []
        #: head() calls answered "absent" from a listing, without a request
        self.heads_saved = 0
        self._threshold = threshold
        self._budget = max_keys
        self._heads: dict[str, int] = {}
        self._listings: dict[str, _Listing] = {}

    # -- the listing ----------------------------------------------------------------

    async def _listing_for(self, key: str) -> _Listing | None:
        directory, slash, _ = key.rpartition("/")
        if not slash or is_internal_key(key):
            # Never list the whole store, nor the bookkeeping, which lists never show.
            return None
        prefix = directory + "/"
        listing = self._listings.get(prefix)
        if listing is not None:
            await listing.ready.wait()
            return listing
        count = self._heads.get(prefix, 0) + 1
        self._heads[prefix] = count
        if count < self._threshold:
            return None
        del self._heads[prefix]
        listing = self._listings[prefix] = _Listing()
        try:
            listing.keys = await self._list(prefix)
        finally:
            listing.ready.set()  # also on failure: waiters fall back to head
        return listing

    async def _list(self, prefix: str) -> set[str] | None:
        """The keys directly in ``prefix``, or None when listing it would read more
        keys than the run's budget has left (which it then spends)."""
        if self._budget <= 0:
            return None
        keys: set[str] = set()
        seen = 0
        infos = self.inner.list(prefix)
        try:
            async for info in infos:
                seen += 1
                if seen > self._budget:
                    log.debug("%s/%s: too many objects to list; heading them", self.url, prefix)
                    self._budget = 0
                    return None
                if "/" not in info.key[len(prefix) :]:
                    keys.add(info.key)
        finally:
            # An abandoned listing is closed now, not when it is garbage collected.
            aclose = getattr(infos, "aclose", None)
            if aclose is not None:
                await aclose()
        self._budget -= seen
        self.listed.append(prefix)
        log.debug("listed %s/%s: %d objects", self.url, prefix, len(keys))
        return keys

    def _wrote(self, key: str) -> None:
        directory, slash, _ = key.rpartition("/")
        listing = self._listings.get(directory + "/") if slash else None
        if listing is not None:
            listing.written.add(key)

    # -- Store --------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        """``None`` from the directory's listing when it is listed and lacks ``key``;
        otherwise the wrapped store's answer."""
        listing = await self._listing_for(key)
        if listing is not None and listing.absent(key):
            validate_key(key)  # what the wrapped store's head would have refused
            self.heads_saved += 1
            return None
        return await self.inner.head(key)

    async def put_bytes(self, key: str, data: bytes, options: PutOptions) -> None:
        await self.inner.put_bytes(key, data, options)
        self._wrote(key)

    async def put_file(self, key: str, path: Path, options: PutOptions) -> None:
        await self.inner.put_file(key, path, options)
        self._wrote(key)

    async def create_exclusive(self, key: str, data: bytes) -> bool:
        created = await self.inner.create_exclusive(key, data)
        if created:
            self._wrote(key)
        return created

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)
        self._deleted(key)

    async def delete_many(self, keys: Sequence[str]) -> None:
        # Forgotten first: a batch that fails part way leaves keys that are
        # "maybe absent", which costs a copy at worst, never a missing file.
        for key in keys:
            self._deleted(key)
        await self.inner.delete_many(keys)

    def _deleted(self, key: str) -> None:
        directory, slash, _ = key.rpartition("/")
        listing = self._listings.get(directory + "/") if slash else None
        if listing is not None:
            listing.written.discard(key)
            if listing.keys is not None:
                listing.keys.discard(key)
