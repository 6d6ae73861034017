"""``FailoverFetcher``: one ``Fetcher`` over several upstreams (``--upstream`` given
more than once), asking the next one when the current one fails.

Every fetch goes to the *current* upstream, the first (primary) one to begin with.
When it fails transiently (a ``FetchError``, after that upstream's own retries), the
fetch is asked of the next upstream in order, and the upstream that failed is
passed over for the rest of the run: the next upstream becomes the current one, so
a dead primary costs its retries once, not once per file. When every upstream has
failed, all of them are tried again in turn and the fetch fails with a
``FetchError`` naming each failure.

An absent file (``NotFoundError``) is a different matter, because TUF uses a 404
as an answer ("there is no ``N+1.root.json``") and a secondary may lag:

- for the next root version (``N.root.json``, which a client probes for), the
  primary's 404 is authoritative and returned at once; a 404 from another upstream
  is checked with the others still in service (the primary included), and
  ``NotFoundError`` is raised when none has the file;
- for every other file (``timestamp.json``, the snapshot and role versions verified
  metadata names, targets), the verified metadata already says the file must exist,
  so a 404 anywhere (a lagging primary included) only means that upstream lacks it:
  the others still in service are asked, and ``NotFoundError`` is raised when none
  has it.

An upstream that fails is named in a warning when it is passed over, and the
counters say which upstream served how many metadata and target files.

Which upstream served a file does not matter for safety: the engine verifies every
byte against the same pinned root, so a hostile or stale upstream can make a run
fail, never change the mirror. Bad bytes (``LengthOrHashMismatchError``,
``OversizeError``), unsafe names and spool errors are therefore not failed over:
they leave at once, as from a single fetcher. ``stats`` sums the upstreams' counters
and says, per upstream, how many fetches it served and failed
(``FetchStats.per_upstream``); ``FetchedBytes.upstream`` names the one that served a
small file (its validators are only meaningful to that server).

What it does not do: go back to an upstream it passed over (a run is short; the
next run starts from the primary again), race upstreams against each other, or
retry by itself (each upstream's fetcher does).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from mirror.errors import FetchError, ForbiddenError, NotFoundError
from mirror.fetch.base import (
    FetchedBytes,
    FetchedFile,
    Fetcher,
    FetchStats,
    Namespace,
    PipeliningFetcher,
    UpstreamStats,
)
from mirror.log import log

__all__ = ["FailoverFetcher"]

_T = TypeVar("_T")
#: a root version a client probes for: a 404 is an answer ("there is none")
_ROOT_PROBE = re.compile(r"\d+\.root\.json")


class FailoverFetcher:
    """Fetches from ``upstreams``, (label, fetcher) pairs in order of preference (the
    first is the primary); see the module docstring. Owns the fetchers: ``aclose``
    closes them all."""

    def __init__(self, upstreams: Sequence[tuple[str, Fetcher]]) -> None:
        if not upstreams:
            raise ValueError("FailoverFetcher needs at least one upstream")
        labels = [label for label, _ in upstreams]
        if len(set(labels)) != len(labels):
            raise ValueError(f"upstream labels must be distinct: {labels}")
        self._labels = labels
        self._fetchers = [fetcher for _, fetcher in upstreams]
        self._served = [0] * len(labels)
        self._failed = [0] * len(labels)
        self._served_by_namespace: dict[Namespace, list[int]] = {
            "metadata": [0] * len(labels),
            "targets": [0] * len(labels),
        }
        self._errors: dict[int, str] = {}
        self._passed_over: set[int] = set()
        self._current = 0
        self._failovers = 0

    def __repr__(self) -> str:
        return f"FailoverFetcher({self._labels!r})"

    @property
    def upstreams(self) -> list[str]:
        """The labels, primary first."""
        return list(self._labels)

    @property
    def fetchers(self) -> dict[str, Fetcher]:
        """Each upstream's own fetcher, by label, primary first."""
        return dict(zip(self._labels, self._fetchers, strict=True))

    @property
    def current(self) -> str:
        """The upstream the next fetch goes to first."""
        return self._labels[self._current]

    @property
    def stats(self) -> FetchStats:
        """The upstreams' counters summed, with ``per_upstream`` filled in (a new
        object on each read)."""
        total = FetchStats(failovers=self._failovers)
        for index, (label, fetcher) in enumerate(zip(self._labels, self._fetchers, strict=True)):
            stats = fetcher.stats
            total.requests += stats.requests
            total.bytes_received += stats.bytes_received
            total.not_modified += stats.not_modified
            total.retries += stats.retries
            total.resumed += stats.resumed
            total.per_upstream[label] = UpstreamStats(
                served=self._served[index],
                failed=self._failed[index],
                requests=stats.requests,
                bytes_received=stats.bytes_received,
                metadata_served=self._served_by_namespace["metadata"][index],
                targets_served=self._served_by_namespace["targets"][index],
                passed_over=index in self._passed_over,
                error=self._errors.get(index),
            )
        return total

    async def fetch_bytes(
        self,
        namespace: Namespace,
        name: str,
        *,
        max_length: int,
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> FetchedBytes | None:
        got, index = await self._run(
            namespace,
            name,
            lambda fetcher: fetcher.fetch_bytes(
                namespace,
                name,
                max_length=max_length,
                if_none_match=if_none_match,
                if_modified_since=if_modified_since,
            ),
        )
        if got is None:
            return None
        return dataclasses.replace(got, upstream=self._labels[index])

    async def fetch_to_file(
        self,
        namespace: Namespace,
        name: str,
        dest: Path,
        *,
        length: int,
        algorithms: tuple[str, ...],
    ) -> FetchedFile:
        fetched, _ = await self._run(
            namespace,
            name,
            lambda fetcher: fetcher.fetch_to_file(
                namespace, name, dest, length=length, algorithms=algorithms
            ),
        )
        return fetched

    async def fetch_many(
        self, namespace: Namespace, items: Sequence[tuple[str, int]]
    ) -> list[bytes | None]:
        """``PipeliningFetcher.fetch_many`` from the upstream the next fetch would go
        to first, when its fetcher pipelines (else every item is None). A file it did
        not give is left to ``fetch_bytes``, which fails over; this one never does."""
        index = self._order()[0]
        fetcher = self._fetchers[index]
        if not isinstance(fetcher, PipeliningFetcher):
            return [None] * len(items)
        results = await fetcher.fetch_many(namespace, items)
        served = sum(result is not None for result in results)
        self._served[index] += served
        self._served_by_namespace[namespace][index] += served
        return results

    async def aclose(self) -> None:
        """Close every upstream's fetcher (all of them, even if one fails)."""
        error: BaseException | None = None
        for fetcher in self._fetchers:
            try:
                await fetcher.aclose()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others
                error = error or exc
        if error is not None:
            raise error

    # -- plumbing ---------------------------------------------------------------------

    def _order(self) -> list[int]:
        """The upstreams to ask, from the current one on: those still in service,
        or all of them when none is."""
        count = len(self._fetchers)
        rotation = [(self._current + step) % count for step in range(count)]
        in_service = [index for index in rotation if index not in self._passed_over]
        return in_service or rotation

    async def _run(
        self, namespace: Namespace, name: str, call: Callable[[Fetcher], Awaitable[_T]]
    ) -> tuple[_T, int]:
        """``call`` on each upstream in ``_order`` until one answers; the answer and
        which upstream gave it."""
        order = self._order()
        not_found: NotFoundError | None = None
        failures: list[tuple[str, FetchError]] = []
        probe = namespace == "metadata" and _ROOT_PROBE.fullmatch(name) is not None
        for position, index in enumerate(order):
            try:
                result = await call(self._fetchers[index])
            except NotFoundError as exc:
                if index == 0 and probe:
                    self._served[index] += 1
                    raise
                if position + 1 < len(order):
                    log.warning(
                        "upstream %s does not have %s/%s, which verified metadata requires;"
                        " asking %s",
                        self._labels[index],
                        namespace,
                        name,
                        self._labels[order[position + 1]],
                    )
                not_found = not_found or exc
                continue
            except FetchError as exc:
                self._failed[index] += 1
                failures.append((self._labels[index], exc))
                self._pass_over(index, exc)
                if position + 1 < len(order):
                    self._failovers += 1
                continue
            self._served[index] += 1
            self._served_by_namespace[namespace][index] += 1
            if index in self._passed_over:  # every upstream had failed; this one is back
                self._passed_over.discard(index)
                self._current = index
            return result, index
        if not_found is not None:
            raise not_found
        assert failures, "an empty rotation"
        if len(failures) == 1 or all(isinstance(e, ForbiddenError) for _, e in failures):
            # Every upstream hides the file (403): as absent as a 404 from each.
            raise failures[0][1]
        summary = "; ".join(f"{label}: {error}" for label, error in failures)
        raise FetchError(f"every upstream failed: {summary}") from failures[-1][1]

    def _pass_over(self, index: int, error: FetchError) -> None:
        """Take ``index`` out of service, with a warning naming it and why; if it was
        the current upstream, the next one in service becomes current (unless
        another fetch moved on already)."""
        self._errors[index] = str(error)
        if index not in self._passed_over:
            self._passed_over.add(index)
            left = [label for i, label in enumerate(self._labels) if i not in self._passed_over]
            log.warning(
                "upstream %s failed (%s); skipping it for the rest of this run%s",
                self._labels[index],
                error,
                f", using {left[0]}" if left else "; no upstream left in service",
            )
        if self._current != index:
            return
        count = len(self._fetchers)
        for step in range(1, count):
            candidate = (index + step) % count
            if candidate not in self._passed_over:
                self._current = candidate
                return
