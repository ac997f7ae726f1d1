"""Prefect flows: one module per job of DESIGN.md, each small and reading top to bottom.

Importing this package (every flow module imports `flows.parameters`) makes a user mistake one line in
the run's logs, in whatever process runs the flow (a worker's flow-run process, ``serve``, the CLI):
Prefect logs an exception leaving a flow or task with its traceback, and then again as "Engine execution
exited with unexpected exception". For a `StreamkeeperError` (a message written for the user) the first
becomes ``ConfigError: <message>`` without the traceback and the second is dropped. Anything else (a
bug) keeps its traceback.
"""

from __future__ import annotations

import logging

import prefect  # noqa: F401  (importing prefect sets up its log handlers, which the filter is added to)

from streamkeeper.errors import StreamkeeperError
from streamkeeper.vendors.http.redact import PREFECT_LOGGERS

ENGINE_EXIT = "Engine execution exited with unexpected exception"


class OneLineUserErrors(logging.Filter):
    """A user-facing error is logged once, as ``<error type>: <message>``, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, StreamkeeperError):
            return True
        if record.msg == ENGINE_EXIT:
            return False
        record.msg = "%s: %s"
        record.args = (type(error).__name__, str(error))
        record.exc_info = None
        record.exc_text = None
        return True


def install_one_line_user_errors(*logger_names: str) -> None:
    """Add the filter to the handlers of the given loggers (Prefect's run loggers when none given)."""
    for name in logger_names or PREFECT_LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, OneLineUserErrors) for f in target.filters):
                target.addFilter(OneLineUserErrors())


install_one_line_user_errors()
