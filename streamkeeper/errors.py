"""The root of every error streamkeeper raises on purpose.

A `StreamkeeperError` is a user-facing failure: the CLI prints its message as one line and exits
non-zero, without a traceback. Anything else escaping to the CLI is a bug and keeps its traceback.

    StreamkeeperError
    ├── ConfigError          a spec, setting or argument is wrong (names the field, and the line if any)
    ├── StoreError           the history store cannot be opened or written
    └── VendorError          a vendor call failed (see streamkeeper.vendors.http.errors)
"""

from __future__ import annotations


class StreamkeeperError(Exception):
    """Base class of all deliberate streamkeeper errors; its message is safe to show a user."""


class ConfigError(StreamkeeperError):
    """A spec, setting or command-line argument is invalid."""


class StoreError(StreamkeeperError):
    """The history store could not be opened, migrated or written."""
