"""The shape every provider adapter has, and the logic they share.

An adapter wraps one official SDK client, configured for honest load numbers (no SDK retries, explicit
timeouts), and translates that SDK's objects and exceptions into ``llmload.types`` events and
``llmload.errors.RequestError``. Its ``chat``/``embed`` methods are lazy generators: the SDK call happens on the
first ``next()``, where ``llmload.metrics.measure`` starts the clock. Adapters never time anything themselves.
"""

from __future__ import annotations

import base64
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

from llmload.errors import ErrorKind, ProviderSetupError, RequestError, kind_for_status
from llmload.secrets import Secret, redact
from llmload.types import ChatRequest, EmbeddingRequest, StreamEvent


@dataclass(slots=True)
class ProviderSettings:
    """How to reach a provider. ``api_key`` is a :class:`Secret`; it never appears in reprs or outputs."""

    base_url: str | None = None
    api_key: Secret | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_connections: int = 64
    region: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    emulated: bool = False
    """True when the target is llmload's own emulator (dummy credentials are then fine)."""


class Provider(ABC):
    """One provider adapter. Subclasses set the class attributes and implement ``chat`` (and ``embed``)."""

    name: ClassVar[str]
    default_model: ClassVar[str]
    default_embedding_model: ClassVar[str] = ""
    api_key_env: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None
    emulator_protocol: ClassVar[str | None] = None
    """Which emulator protocol serves this provider offline (None: needs no server)."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    @classmethod
    def has_credentials(cls) -> bool:
        """Whether the environment holds credentials for the real service."""
        return bool(cls.api_key_env and os.environ.get(cls.api_key_env))

    @classmethod
    def emulator_base_url(cls, emulator_url: str) -> str:
        """The base URL this provider's SDK needs to reach the emulator at ``emulator_url``."""
        return emulator_url

    @abstractmethod
    def chat(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Yield the normalized events of one chat call; raise RequestError on failure."""

    def embed(self, request: EmbeddingRequest) -> Iterator[StreamEvent]:
        raise ProviderSetupError(f"provider '{self.name}' does not support embeddings")

    def close(self) -> None:  # noqa: B027 - optional hook: adapters without pooled connections need nothing
        """Release the SDK client's connections."""


def check_embeddings(vectors: list[Any], request: EmbeddingRequest) -> None:
    """A reply must hold one non-empty vector per input, each of the requested ``dimensions`` when asked for
    (a base64 vector holds 4 bytes a float32 dimension): a server that answers otherwise did not do the work that
    was measured."""
    if len(vectors) != len(request.inputs):
        raise RequestError(ErrorKind.MALFORMED_STREAM,
                           f"asked for {len(request.inputs)} embeddings, got {len(vectors)}")
    sizes = [_vector_size(v) for v in vectors]
    if not all(sizes) or (request.dimensions and any(size != request.dimensions for size in sizes)):
        raise RequestError(ErrorKind.MALFORMED_STREAM, "an embedding came back empty or with the wrong dimensions "
                           f"(asked for {request.dimensions or 'any'}, got {sorted(set(sizes))})")


def _vector_size(vector: Any) -> int:
    if isinstance(vector, str):
        try:
            return len(base64.b64decode(vector, validate=True)) // 4
        except ValueError:
            return 0
    return len(vector) if isinstance(vector, list | tuple) else 0


def validate_base_url(url: str, provider: str) -> str:
    """A one-line error for URLs an SDK would choke on later, deep inside a run."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ProviderSetupError(
            f"--host for provider '{provider}' must be an http(s) URL like http://127.0.0.1:8000, got {url!r}"
        )
    return url.rstrip("/")


_CONNECTION_WORDS = ("connect", "protocol", "remotedisconnected", "readerror", "network", "incomplete")


def classify_exception(exc: BaseException) -> RequestError:
    """Map any SDK or transport exception to a RequestError, by status code first and type name second.

    The SDKs disagree on what they raise (openai wraps transport errors, anthropic and ollama leak raw
    ``httpx``/``httpx2`` errors, boto3 raises ``ClientError``/urllib3 errors), so this looks at what they share.
    """
    if isinstance(exc, RequestError):
        return exc
    message = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if isinstance(status, int) and status >= 400:
        from llmload.errors import parse_retry_after

        retry_after = parse_retry_after(headers)
        return RequestError(kind_for_status(status), message, status_code=status, retry_after_s=retry_after)
    names = " ".join(cls.__name__ for cls in type(exc).__mro__).lower()
    if "timeout" in names or "timedout" in names:
        kind = ErrorKind.TIMEOUT
    elif "jsondecode" in names or "checksum" in names or "decode" in names:
        kind = ErrorKind.MALFORMED_STREAM
    elif any(word in names for word in _CONNECTION_WORDS):
        kind = ErrorKind.CONNECTION
    else:
        kind = ErrorKind.OTHER
    return RequestError(kind, f"{type(exc).__name__}: {message}")
