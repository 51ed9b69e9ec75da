"""llmload's exceptions, and the small set of error kinds every provider's failures are normalized into.

Two families live here:

* ``LLMLoadError`` and its children are *llmload's own* errors: bad configuration, bad data, a provider that
  cannot be set up. The CLI and the Locust plugin turn them into a one-line message and exit code 2.
* ``RequestError`` is what a measured request failed with. It carries an ``ErrorKind`` so that results can count
  failures by kind across SDKs whose exception classes have nothing in common.
"""

from __future__ import annotations

import enum


class LLMLoadError(Exception):
    """Base of every error llmload raises on purpose. ``str(err)`` is a one-line, user-facing message."""


class ConfigError(LLMLoadError):
    """A configuration file, option or value is wrong. The message names the file/field to fix."""


class ValidationError(LLMLoadError, ValueError):
    """A data-model value breaks one of its rules (for example P50 > P95)."""


class ProviderSetupError(LLMLoadError):
    """A provider cannot be used as configured (unknown name, missing credentials, bad URL)."""


class ErrorKind(enum.StrEnum):
    """Why a request failed, normalized across SDKs. Results count failures per kind."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TRUNCATED_STREAM = "truncated_stream"
    MALFORMED_STREAM = "malformed_stream"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    QUALITY = "quality"
    INTERRUPTED = "interrupted"
    OTHER = "other"


class RequestError(Exception):
    """A measured request failed. Raised by provider adapters; never carries secrets in its message."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s


def kind_for_stream_error(error: object) -> ErrorKind:
    """The kind of an OpenAI-protocol in-stream ``{"error": {...}}`` event, which has no HTTP status: by its
    ``type`` (or ``code``). Shared by the SDK and fast-path adapters so both count the same event alike."""
    body = error if isinstance(error, dict) else {}
    err_type = str(body.get("type") or body.get("code") or "")
    if "overloaded" in err_type:
        return ErrorKind.OVERLOADED
    if "rate" in err_type or err_type == "requests":
        return ErrorKind.RATE_LIMITED
    return ErrorKind.SERVER_ERROR


def kind_for_status(status: int) -> ErrorKind:
    """Map an HTTP status to an ErrorKind the same way for every provider."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (503, 529):
        return ErrorKind.OVERLOADED
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    if 400 <= status < 500:
        return ErrorKind.BAD_REQUEST
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.OTHER


def parse_retry_after(headers: object) -> float | None:
    """Read ``retry-after-ms`` / ``retry-after`` (seconds) from a headers mapping; None when absent or unparsable."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    raw_ms = get("retry-after-ms")
    if raw_ms is not None:
        try:
            return float(raw_ms) / 1000.0
        except ValueError:
            pass
    raw = get("retry-after")
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            return None
    return None
