"""Redaction of secrets from text and log records.

Every secret a client unwraps from a `SecretStr` is registered here at the moment the client is built;
`redact()` replaces each registered value in a text, and `RedactingFilter` does the same for log records.
The registry is process-wide because log handlers are.
"""

from __future__ import annotations

import logging
import threading

MASK = "***"
_MIN_LENGTH = 4  # shorter values would mask ordinary words; no real secret is that short

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever `redact` runs."""
    if value and len(value) >= _MIN_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return `text` with every registered secret replaced by ``***``."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix here
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


PREFECT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.flows", "prefect.tasks")
"""The loggers whose handlers carry flow and task run logs (to the console and to Prefect's API)."""


def install_log_redaction(*logger_names: str) -> None:
    """Attach a `RedactingFilter` to the handlers of the given loggers (root when none given)."""
    names = logger_names or ("",)
    for name in names:
        logger = logging.getLogger(name)
        targets: list[logging.Filterer] = [logger, *logger.handlers]
        for target in targets:
            if not any(isinstance(f, RedactingFilter) for f in target.filters):
                target.addFilter(RedactingFilter())
