"""Prefect tasks: thin, coarse wrappers (a vendor account or a batch per task) over the library.

Every flow imports from here, so importing this package masks registered secrets in the records of Prefect's
log handlers, in whatever process runs the flow (the CLI, ``serve``, a worker's flow-run process).
"""

import prefect  # noqa: F401  (importing prefect sets up its log handlers, which the filter is added to)

from streamkeeper.vendors.http.redact import PREFECT_LOGGERS, install_log_redaction

install_log_redaction(*PREFECT_LOGGERS)
