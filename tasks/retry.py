"""Task retry conditions: retry what may pass later, fail fast on mistakes and refusals."""

from __future__ import annotations

from typing import Any

from streamkeeper.errors import StoreError
from streamkeeper.vendors.http import VendorError


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry on unreachable vendors, 429, 5xx and a busy store only."""
    try:
        state.result(raise_on_failure=True)
    except VendorError as exc:
        return exc.transient
    except StoreError:
        return True
    except Exception:
        return False
    return False
