"""``Answer``: what ``HttpFetcher`` reads of an HTTP answer, whichever connection
(``mirror.fetch.h1``, httpcore or an injected httpx transport) produced it; and
``Target``, where a GET goes.

Status, reason phrase, case-insensitive headers (a repeated header's values joined
with ``", "``, as httpx does), the body as an async iterator of raw chunks, and
``aclose`` to release it. What it does not do: read or interpret anything itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Answer", "Closer", "Headers", "Target", "Timeouts"]

Headers = list[tuple[bytes, bytes]]
#: httpcore's timeout extension: "connect", "read", "write", "pool" (seconds or None)
Timeouts = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Target:
    """A GET's destination as sent: ``scheme`` (``b"http"``/``b"https"``), ``host``
    (IDNA, no brackets), ``port`` (None: the scheme's default), ``netloc`` (the
    ``Host`` header) and ``path`` (the request target, percent-encoded)."""

    scheme: bytes
    host: bytes
    port: int | None
    netloc: bytes
    path: bytes

    @property
    def port_or_default(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.scheme == b"https" else 80


class Closer(Protocol):
    async def aclose(self) -> None: ...


class Answer:
    """An HTTP answer: ``status``, ``reason``, ``header(name)``, ``chunks()`` and
    ``aclose()``."""

    __slots__ = ("_chunks", "_close", "_fields", "_raw", "closes_at_once", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        raw: Headers,
        chunks: AsyncIterator[bytes],
        close: Closer,
        *,
        closes_at_once: bool = False,
    ) -> None:
        #: ``aclose`` neither waits for the peer nor can be interrupted half-way
        #: (``mirror.fetch.h1``): the caller needs no shielded, time-bounded scope
        self.closes_at_once = closes_at_once
        self.status = status
        self.reason = reason
        self._raw = raw
        self._fields: dict[str, str] | None = None
        self._chunks = chunks
        self._close = close

    @property
    def raw_headers(self) -> Headers:
        """The header fields as received (names and values as bytes)."""
        return self._raw

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        fields = self._fields
        if fields is None:
            fields = {}
            for key, value in self._raw:
                lowered = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                fields[lowered] = f"{fields[lowered]}, {text}" if lowered in fields else text
            self._fields = fields
        return fields.get(name.lower())

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk (iterate once)."""
        return self._chunks

    async def aclose(self) -> None:
        """Release the answer (and its connection, when the body was not read to
        the end)."""
        await self._close.aclose()
