"""The fuzz tier's profiles and strategies: hostile headers, bodies, landing files and YAML.

Profiles (hypothesis settings, chosen with ``STREAMKEEPER_FUZZ``):

- ``ci`` (default): bounded so that the whole suite keeps its time budget (the three fuzz files take
  ~30 s of the suite's time on the 2-core machine);
- ``dev``: 20x the examples, for a developer looking for the next class of bad input:
  ``STREAMKEEPER_FUZZ=dev .venv/bin/python -m pytest tests/fuzz -p no:randomly -s``.

Every property is also bounded in memory, measured (the receiver process's peak RSS from
``/proc/<pid>/status``, tracemalloc for the in-process loaders) against a bound a real blow-up would pass
by far.
"""

from __future__ import annotations

import json
import os
import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "fuzz-ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "fuzz-dev",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
PROFILE = os.environ.get("STREAMKEEPER_FUZZ", "ci")
FUZZ = settings.get_profile(f"fuzz-{PROFILE}")


TIMEOUT = 3600 if PROFILE == "dev" else 300
"""Seconds a fuzz test may take (pytest-timeout): the developer's profile runs for minutes."""


def scaled(ci: int) -> int:
    """A count for the chosen profile: `ci` in CI, 20x for a developer."""
    return ci * 20 if PROFILE == "dev" else ci


# -- odd text and numbers ----------------------------------------------------------------------------------
ODD_CHARS = [
    "\ud800",  # unpaired surrogates (not UTF-8: the store refuses them)
    "\udfff",
    "\x00",
    "\x1b[31m",
    "\n",
    "\r\n",
    "\u2028",
    "\u202e",  # right-to-left override
    "\ufeff",
    "\U0001f600",
    "\u00b2",  # a superscript digit: isdigit() says yes, int() says no
    "\u0663",  # an Arabic-Indic digit: int() takes it
    "é",
    "%0a",
    "../",
]
odd_text = st.lists(
    st.one_of(st.characters(), st.sampled_from(ODD_CHARS), st.sampled_from(string.printable)), max_size=20
).map("".join)
huge_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 86400, 10**18]),
)
odd_numbers = st.one_of(
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, 1.0]),
)
odd_times = st.one_of(
    odd_numbers,
    odd_text,
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999+14:00",
            "2026-02-30T00:00:00Z",
            "2026-01-01 10:00:00",
            "2026-01-01T00:00:00-25:00",
            "",
            "never",
        ]
    ),
    st.none(),
)
scalars = st.one_of(st.none(), st.booleans(), odd_numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=20,
)
identifiers = st.one_of(
    odd_text, huge_ints, st.none(), json_values, st.sampled_from(["evt-1", "evt-2", "77"])
)


# -- vendor-shaped bodies, each field odd ------------------------------------------------------------------
def with_extras(shape: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A vendor shape with some fields dropped and odd ones added."""

    def edit(base: dict[str, Any], drop: list[str], extra: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in base.items() if k not in drop}, **extra}

    return st.builds(
        edit,
        shape,
        st.lists(st.sampled_from(["sequenceNumber", "subscriptionUrl", "data", "id", "kind"]), max_size=2),
        st.dictionaries(odd_text, json_values, max_size=2),
    )


dma_notifications = with_extras(
    st.fixed_dictionaries(
        {
            "subscriptionUrl": st.one_of(
                st.sampled_from(["https://dma.test/api/rest/subscriptions/1", "https://dma.test/x/2"]),
                odd_text.map(lambda t: f"https://dma.test/api/rest/subscriptions/{t}"),
                odd_text,
            ),
            "sequenceNumber": st.one_of(st.integers(1, 5), huge_ints, odd_text, st.booleans(), odd_numbers),
            "notificationType": st.one_of(st.sampled_from(["ADD", "UPDATE", "DELETE"]), json_values),
        },
        optional={"subscriptionIdentifier": identifiers, "conference": json_values},
    )
)
thingspace_messages = with_extras(
    st.fixed_dictionaries(
        {
            "kind": st.one_of(st.sampled_from(["ts.event", "ts.event.diagnostics"]), json_values),
            "action": scalars,
            "data": st.one_of(
                st.fixed_dictionaries(
                    {"id": identifiers, "createdon": odd_times},
                    optional={"transactionid": identifiers, "fields": json_values},
                ),
                json_values,
            ),
        }
    )
)
stream_events = with_extras(
    st.fixed_dictionaries(
        {"id": identifiers, "type": scalars, "created_at": odd_times}, optional={"data": json_values}
    )
)


def encode_json(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; with `ascii_only` False, surrogates go raw into the bytes (as a broken sender's would)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


xml_bodies = st.builds(
    lambda seq, sub: (
        f'<?xml version="1.0"?><plcm-subscription-notification><sequence-number>{seq}</sequence-number>'
        f"<subscription-url>{sub}</subscription-url></plcm-subscription-notification>"
    ).encode("utf-8", "surrogatepass"),
    huge_ints,
    odd_text,
)
raw_text_bodies = st.sampled_from(
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b"NaN",
        b'{"a": Infinity}',
        b"1e999",
        b"-" + b"9" * 5000,
        b"[" * 5000,
        b"\xff\xfe",
    ]
)
