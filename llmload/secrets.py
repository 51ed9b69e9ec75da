"""Keeping credentials out of every output.

Credentials are read from the environment only by provider adapters, through :func:`read_secret`, which also
registers the value so :func:`redact` can scrub it from any text that leaves the process: log lines, error
messages stored in results, reports, the history store. Known key shapes are scrubbed even if never registered.
"""

from __future__ import annotations

import logging
import os
import re

_KNOWN: set[str] = set()
_PATTERNS = re.compile(
    r"(sk-(?:ant-)?[A-Za-z0-9_\-]{8,}"
    r"|AKIA[0-9A-Z]{12,}"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{12,}"
    r"|(?i:aws_secret_access_key|api[_-]?key|x-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+_\-]{8,})"
)
REDACTED = "***"
SECRET_ENV_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "OLLAMA_API_KEY",
)


class Secret:
    """A credential whose ``str``/``repr`` never show the value. Use ``.reveal()`` only to hand it to an SDK."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def register(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it. Short values are ignored (false positives)."""
    if value and len(value) >= 6:
        _KNOWN.add(value)


def read_secret(env_var: str) -> Secret | None:
    value = os.environ.get(env_var)
    return Secret(value) if value else None


def register_environment() -> None:
    """Register every credential found in the usual environment variables."""
    for name in SECRET_ENV_VARS:
        register(os.environ.get(name))


def redact(text: str) -> str:
    """``text`` with every registered secret and every known key shape replaced by ``***``."""
    for value in _KNOWN:
        if value in text:
            text = text.replace(value, REDACTED)
    return _PATTERNS.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the root logger's handlers (and future records via the root logger)."""
    register_environment()
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
