"""Helpers of the ingest tests (fixtures are in conftest.py)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from pollkit import wait_for as wait_for  # re-exported for the ingest tests

ROOT = Path(__file__).resolve().parents[2]
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REGION = "us-east-1"
DEADLINE = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Paused:
    """A child process running a drain, paused right after its first commit."""

    process: subprocess.Popen[str]
    marker: Path

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, like a machine that dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=DEADLINE)
        assert self.process.returncode == -signal.SIGKILL


CHILD = """
import json, sys
args = json.loads(sys.argv[1])
import boto3
from streamkeeper.store import HistoryStore
from streamkeeper.ingest import drain_kinesis, drain_sqs, load_landing
store = HistoryStore(args["db"])
kind = args["kind"]
if kind == "sqs":
    client = boto3.client("sqs", endpoint_url=args["endpoint"], region_name=args["region"])
    report = drain_sqs(store, client, args["target"], **args["options"])
elif kind == "kinesis":
    client = boto3.client("kinesis", endpoint_url=args["endpoint"], region_name=args["region"])
    report = drain_kinesis(store, client, args["target"], **args["options"])
else:
    report = load_landing(store, args["target"], **args["options"])
print(report.model_dump_json())
"""
