"""The command line as a user runs it: real processes, real Prefect, the DMA emulator, a real DuckDB file."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clikit import CliResult, RunStreamkeeper
from pydantic import SecretStr

from blocks.dma import DMACredentials
from streamkeeper.sandbox.base import SandboxServer
from streamkeeper.sandbox.dma import DMASandbox
from streamkeeper.sandbox.tls import TLSFiles, self_signed
from streamkeeper.store import HistoryStore

CLI = [sys.executable, "-m", "streamkeeper.cli"]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STREAMKEEPER_"))}
    env["STREAMKEEPER_HOME"] = str(tmp_path / "home")
    env["STREAMKEEPER_DB"] = str(tmp_path / "history.duckdb")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def in_process_env(tmp_path: Path, prefect_api_url: str | None = None) -> dict[str, str | None]:
    """`base_env` for a command run in this process: the same variables set, no Prefect home of its own."""
    return {
        "STREAMKEEPER_HOME": str(tmp_path / "home"),
        "STREAMKEEPER_DB": str(tmp_path / "history.duckdb"),
        "PREFECT_API_URL": prefect_api_url,
    }


def assert_one_line_error(result: subprocess.CompletedProcess[str] | CliResult, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]


def test_usage_errors_need_no_server(tmp_path: Path, run_streamkeeper: RunStreamkeeper) -> None:
    env = in_process_env(tmp_path)
    run = functools.partial(run_streamkeeper, env=env)
    assert_one_line_error(run(["connect", "acme"]), "unknown vendor 'acme'", "dma")
    assert_one_line_error(
        run(["connect", "dma", "--set", "password=hunter22"]),
        "secrets are not taken from the command line",
    )
    assert_one_line_error(run(["connect", "dma", "--set", "colour=blue"]), "no such field")
    assert_one_line_error(run(["refresh", "--ttl", "100000"]), "--ttl 100000")
    assert_one_line_error(run(["report", "nonsense"]), "unknown report 'nonsense'")
    missing = run(["connect", "dma", "--set", "base_url=https://x.test"])
    assert_one_line_error(missing, "is required")


@pytest.fixture
def harness_env(prefect_api: None, tmp_path: Path) -> dict[str, str]:
    """Subprocesses that use the test session's Prefect API instead of starting their own."""
    from prefect.settings import PREFECT_API_URL

    env = base_env(tmp_path)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


@pytest.fixture
def dma_server(serve: Callable[..., SandboxServer], tls_files: TLSFiles) -> SandboxServer:
    return serve(DMASandbox(validate_consumer_url=False), tls=tls_files)


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("unreachable", ["cannot connect"]),
        ("wrong-password", ["HTTP 401"]),
        ("wrong-ca", ["not trusted"]),
    ],
)
@pytest.mark.slow  # a `streamkeeper refresh` process each (a Prefect start and a flow run): ~5-20 s
def test_refresh_bad_input_is_one_clear_line(
    case: str,
    needles: list[str],
    harness_env: dict[str, str],
    dma_server: SandboxServer,
    tls_files: TLSFiles,
    tmp_path: Path,
) -> None:
    base_url = dma_server.url + "/api/rest"
    password, ca = "provisioner-pass", tls_files.cert_pem
    if case == "unreachable":
        base_url = "https://127.0.0.1:9/api/rest"
    elif case == "wrong-password":
        password = "S3NTINEL-pw"
    elif case == "wrong-ca":
        ca = self_signed(tmp_path / "other", common_name="other").cert_pem
    DMACredentials(
        base_url=base_url, username="provisioner", password=SecretStr(password), ca_bundle=ca
    ).save(f"cli-{case}", overwrite=True)
    result = run_cli(["refresh", "--dma", f"cli-{case}"], harness_env)
    assert_one_line_error(result, *needles)
    assert "S3NTINEL" not in result.stdout + result.stderr


def test_refresh_with_a_wrong_password_is_one_clear_line_in_process(
    prefect_api: None,
    dma_server: SandboxServer,
    tls_files: TLSFiles,
    tmp_path: Path,
    run_streamkeeper: RunStreamkeeper,
) -> None:
    # the fast tier's refresh through the CLI (the test above runs each case as a process, in the slow tier)
    from prefect.settings import PREFECT_API_URL

    DMACredentials(
        base_url=dma_server.url + "/api/rest",
        username="provisioner",
        password=SecretStr("S3NTINEL-pw"),
        ca_bundle=tls_files.cert_pem,
    ).save("cli-in-process-wrong-password", overwrite=True)
    env = in_process_env(tmp_path, str(PREFECT_API_URL.value()))
    result = run_streamkeeper(["refresh", "--dma", "cli-in-process-wrong-password"], env=env)
    assert_one_line_error(result, "HTTP 401")
    assert "S3NTINEL" not in result.stdout + result.stderr


def test_connect_reads_secrets_from_the_environment(
    prefect_api: None, tmp_path: Path, run_streamkeeper: RunStreamkeeper
) -> None:
    from prefect.settings import PREFECT_API_URL

    ca = tmp_path / "ca.pem"
    ca.write_text(self_signed(tmp_path / "tls").cert_pem)
    env = {
        **in_process_env(tmp_path, str(PREFECT_API_URL.value())),
        "STREAMKEEPER_DMA_PASSWORD": "S3NTINEL-env-secret",
    }
    result = run_streamkeeper(
        [
            "connect",
            "dma",
            "--name",
            "cli-connect",
            "--set",
            "base_url=https://dma.test/api/rest",
            "--set",
            "username=provisioner",
            "--set",
            f"ca_bundle=@{ca}",
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "S3NTINEL" not in result.stdout + result.stderr
    block = DMACredentials.load("cli-connect")
    assert block.password.get_secret_value() == "S3NTINEL-env-secret"
    assert block.ca_bundle and "BEGIN CERTIFICATE" in block.ca_bundle


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_refresh_processes_at_once_on_a_fresh_home(
    dma_server: SandboxServer, tls_files: TLSFiles, tmp_path: Path
) -> None:
    """Each process starts its own ephemeral Prefect API on one fresh PREFECT_HOME; both must succeed."""
    env = base_env(tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_text(tls_files.cert_pem)
    client_env = {**env, "STREAMKEEPER_DMA_PASSWORD": "provisioner-pass"}
    connect = run_cli(
        [
            "connect",
            "dma",
            "--set",
            f"base_url={dma_server.url}/api/rest",
            "--set",
            "username=provisioner",
            "--set",
            f"ca_bundle=@{ca}",
        ],
        client_env,
    )
    assert connect.returncode == 0, connect.stderr
    dma = dma_server.sandbox
    assert isinstance(dma, DMASandbox)
    from streamkeeper.vendors.dma import DMAClient
    from streamkeeper.vendors.http import tls_verify

    with DMAClient(
        dma.url + "/api/rest",
        username="admin",
        password=SecretStr("admin-pass"),
        verify=tls_verify(tls_files.cert_pem),
    ) as c:
        for i in range(5):
            c.create_subscription(
                "conferences", {"consumer_url": "http://x.test/", "time_to_live": 120, "passback": f"p{i}"}
            )
    procs = [
        subprocess.Popen(
            [*CLI, "refresh", "--within", "3600"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=400) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "refreshed 5" in out
        assert "lock" not in (out + err).lower()
    rows = HistoryStore(env["STREAMKEEPER_DB"]).query(
        "SELECT flow_run_id, count(*) AS n FROM subscriptions WHERE change = 'refreshed' GROUP BY 1"
    )
    assert sorted(rows["n"].tolist()) == [5, 5]


# -- usage errors and careless input (issue 11, classes 8 and 9) ----------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["refresh", "--within", "abc"], "Invalid value for '--within'"),
        (["plan"], "Missing argument 'spec'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["ingest", "--max-events"], "Option '--max-events' requires an argument"),
        (["report"], "Missing argument 'name'"),
    ],
)
def test_usage_errors_are_clicks_message_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamkeeper.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"Error: {message}" in err and "Traceback" not in err


def test_a_usage_error_exits_2_from_the_real_process(tmp_path: Path) -> None:
    result = run_cli(["plan"], base_env(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: Missing argument 'spec'" in result.stderr


def test_files_that_are_not_utf8_and_missing_stores_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamkeeper.cli import main

    latin1 = tmp_path / "spec.yaml"
    latin1.write_bytes("dma:\n  - connection: caf\xe9\n".encode("latin-1"))
    binary = tmp_path / "rx.yaml"
    binary.write_bytes(bytes(range(256)))
    missing = tmp_path / "no" / "such" / "dir" / "history.duckdb"
    for argv, needle in [
        (["plan", str(latin1)], "spec.yaml: not UTF-8 text (byte 0xe9 at offset 24)"),
        (["apply", str(latin1)], "spec.yaml: not UTF-8 text"),
        (["onboard", str(latin1)], "spec.yaml: not UTF-8 text"),
        (["receive", "--config", str(binary)], "rx.yaml: not UTF-8 text (byte 0x80 at offset 128)"),
        (["report", "current_subscriptions", "--db", str(missing)], f"no history store at {missing}"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, (argv, err)
    assert not (tmp_path / "no").exists()  # a read never creates a store
