"""Onboarding a Stream partner organisation, from token to live locations (no Prefect here).

- `spec`: the YAML onboarding spec (`load_spec`, `load_spec_text`), errors naming file, line and field.
- `steps`: each step as a plain function over `StreamClient` that reads what exists before it writes.
- `journal`: a record per step, written to ``onboarding_steps`` as it ends, and the run's report.

The ``onboard-organization`` flow (``flows/onboard.py``) runs the steps in order as Prefect tasks.
"""

from streamkeeper.onboarding.journal import Journal, OnboardingError, StepRecord, issued_sso_users
from streamkeeper.onboarding.spec import OnboardingSpec, load_spec, load_spec_text
from streamkeeper.onboarding.steps import SSOLink, TokenVault

__all__ = [
    "Journal",
    "OnboardingError",
    "OnboardingSpec",
    "SSOLink",
    "StepRecord",
    "TokenVault",
    "issued_sso_users",
    "load_spec",
    "load_spec_text",
]
