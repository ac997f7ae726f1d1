"""Run several ``streamkeeper`` commands one after another in one process (one Python start for all).

    python tests/reliability/run_commands.py '[["apply", "a.yaml"], ["apply", "b.yaml"]]'

Prints ``EXIT <code> <seconds>`` after each command, and exits 1 if any command did not exit 0.
"""

from __future__ import annotations

import json
import sys
import time

from streamkeeper.cli import main


def run() -> int:
    worst = 0
    for args in json.loads(sys.argv[1]):
        started = time.monotonic()
        code = main(args)
        print(f"EXIT {code} {time.monotonic() - started:.3f}", flush=True)
        worst = worst or code
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(run())
