"""Every provider adapter, fed truncated and garbled bytes by a raw socket server: a failed RequestRecord, always.

The server answers any request with a plausible HTTP head (status 200, the content type the SDK expects, chunked)
and then a garbled body: random bytes, broken frames, or a body cut off mid-chunk. The real SDK parses it; the
adapter must turn whatever happens into a record with an error kind, and never hang (the client read timeout is
short, and each case runs in a thread with a deadline).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from llmload.errors import ErrorKind
from llmload.metrics import RequestRecord
from llmload.providers import PROVIDERS, provider_class
from llmload.providers.base import ProviderSettings
from llmload.results import BenchmarkScenario
from llmload.workload import execute
from tests.raw_http import RawHTTPServer

CLIENT_TIMEOUT_S = 1.0
CASE_DEADLINE_S = 20.0

_DEFAULT_CONTENT_TYPE = "text/event-stream; charset=utf-8"
_CONTENT_TYPES = {
    "converse": "application/vnd.amazon.eventstream",
    "invoke-with-response-stream": "application/vnd.amazon.eventstream",
    "/api/": "application/x-ndjson",
}


def _garbled_bodies() -> dict[str, bytes]:
    rng = random.Random(9)
    return {
        "random_bytes": bytes(rng.randrange(256) for _ in range(600)),
        "sse_garbage": b"data: {\"choices\": [{\"delta\": {\"content\": 42}\n\ndata: \xff\xfe\x00\n\n",
        "json_cut": b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"',
        "event_noise": b"event: message_start\ndata: not json at all\n\n" * 3,
        "ndjson_garbage": b'{"message": {"content": "hi"}, "done": fals\n{{{\n',
        "binary_frame": b"\x00\x00\x00\x50\x00\x00\x00\x10" + bytes(rng.randrange(256) for _ in range(40)),
        "empty": b"",
    }


BODIES = _garbled_bodies()


def networked_providers() -> list[str]:
    """Providers that talk HTTP (the in-process mock does not). One that fails to import stays in, to fail."""
    names = []
    for name in PROVIDERS:
        try:
            if provider_class(name).emulator_protocol is None:
                continue
        except ImportError:
            pass
        names.append(name)
    return names


class GarbleServer:
    """Sends ``body`` after a chunked 200 head with the content type the path's SDK expects, or cuts it off."""

    def __init__(self) -> None:
        self.body = b""
        self.cut = False
        self.server = RawHTTPServer(self._respond)
        self.url = self.server.url

    def _respond(self, head: bytes) -> bytes:
        path = head.split(b" ", 2)[1].decode("latin-1")
        content_type = next((ct for key, ct in _CONTENT_TYPES.items() if key in path), _DEFAULT_CONTENT_TYPE)
        status = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        if self.cut:
            # Announce more bytes than are sent, then close: a body cut off mid-chunk.
            return status + f"{len(self.body) + 100:x}\r\n".encode() + self.body
        chunk = f"{len(self.body):x}\r\n".encode() + self.body + b"\r\n" if self.body else b""
        return status + chunk + b"0\r\n\r\n"

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def garble_server() -> Iterator[GarbleServer]:
    server = GarbleServer()
    yield server
    server.close()


def _run_with_deadline(provider_name: str, url: str, streamed: bool) -> RequestRecord:
    cls = provider_class(provider_name)
    provider = cls(ProviderSettings(base_url=cls.emulator_base_url(url), timeout_s=CLIENT_TIMEOUT_S, emulated=True))
    box: list[RequestRecord | BaseException] = []

    def run() -> None:
        try:
            box.append(execute(provider, BenchmarkScenario(name="fuzz", stream=streamed), cls.default_model,
                               random.Random(0)))
        except BaseException as exc:  # reported by the assertion below: it must never happen
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(CASE_DEADLINE_S)
    provider.close()
    assert not thread.is_alive(), f"{provider_name}: the request hung past {CASE_DEADLINE_S} s"
    (outcome,) = box
    assert isinstance(outcome, RequestRecord), f"{provider_name}: raised {outcome!r}"
    return outcome


@pytest.mark.parametrize("cut", [False, True], ids=["complete", "cut"])
@pytest.mark.parametrize("body_name", list(BODIES))
@pytest.mark.parametrize("provider_name", networked_providers())
def test_garbled_stream_is_a_failed_record(
    garble_server: GarbleServer, provider_name: str, body_name: str, cut: bool
) -> None:
    garble_server.body = BODIES[body_name]
    garble_server.cut = cut
    for streamed in (True, False):
        record = _run_with_deadline(provider_name, garble_server.url, streamed)
        assert not record.ok, f"{provider_name}/{body_name}/stream={streamed}: garbage counted as a success"
        assert record.error_kind in {k.value for k in ErrorKind}
        assert record.error_message
