"""HTTP connection reuse after a finished SSE stream, for the sync SDKs.

openai-python's sync ``Stream`` stops reading at ``data: [DONE]`` and closes the response before the HTTP/1.1
chunked body's terminator has been read, so the connection cannot go back to the pool: every streamed request then
opens a new TCP (and, against a real API, TLS) connection, and that setup lands in the next request's TTFT. The
SDK's async ``AsyncStream`` drains the body for this reason; :class:`ReusingTransport` does the same for the sync
client, and only for a body whose last bytes were the ``[DONE]`` event, so an abandoned or failed stream is still
closed, never drained.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

SSE_DONE = b"data: [DONE]"
MAX_DRAIN_BYTES = 64 * 1024
"""A server that keeps sending after ``[DONE]`` is not drained past this; its connection is closed instead."""


class _DrainAfterDone(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream) -> None:
        self._inner = inner
        self._tail = b""

    def __iter__(self) -> Iterator[bytes]:
        for part in self._inner:
            self._tail = (self._tail + part)[-64:]
            yield part

    def close(self) -> None:
        if self._tail.rstrip().endswith(SSE_DONE):
            drained = 0
            try:
                # Iterating again reads on from where the SDK stopped: the body's terminator, sent with [DONE].
                for part in self._inner:
                    drained += len(part)
                    if drained > MAX_DRAIN_BYTES:
                        break
            except httpx2.TransportError:
                pass  # nothing to reuse; close() below discards the connection
        self._inner.close()


class ReusingTransport(httpx2.HTTPTransport):
    """``httpx2.HTTPTransport`` whose responses drain the HTTP body's end after an SSE ``[DONE]`` on close."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        response.stream = _DrainAfterDone(response.stream)  # type: ignore[arg-type]
        return response
