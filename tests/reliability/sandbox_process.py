"""The emulators in a process of their own, so that they outlive a streamkeeper process killed with SIGKILL.

    python tests/reliability/sandbox_process.py STATE_DIR

Starts `Sandbox` (Stream auto-authorising OAuth, the DMA not probing consumer URLs) on free loopback ports,
prints one JSON line ``{"urls": {...}, "ca_pem": "..."}``, then answers JSON commands, one per stdin line,
with one JSON line each:

- ``{"op": "state"}``: what the emulators hold, as lists a test can compare with what a spec says (twins
  show up as repeated entries);
- ``{"op": "progress"}``: write requests per emulator (the counters ``GET /_sandbox/stats`` shows, for
  all emulators in one round trip);
- ``{"op": "reset"}``: forget all state (and request counts);
- ``{"op": "emit", "plt": N, "equinix_subscription": ID, "equinix": M}``: start every PLT stream and publish
  N events into each, append M messages to an Equinix subscription's pull feed; answers the PLT timetokens
  and the Equinix count.

End of stdin stops the emulators. Test helper only: read from the emulators' memory, not through streamkeeper.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from streamkeeper.sandbox.runner import Sandbox


def state(sandbox: Sandbox) -> dict[str, Any]:
    apps: Any = sandbox.apps
    dma, plt, stream, ts, eqx = (apps[v] for v in ("dma", "plt", "stream", "thingspace", "equinix"))
    dma._purge()
    out: dict[str, Any] = {
        "dma": sorted(str(s.passback) for s in list(dma.subscriptions.values())),
        "plt": sorted(
            s.stream_id for p in list(plt.partners.values()) for s in list(p.streams.values()) if s.started
        ),
        "thingspace_targets": sorted(str(t.public.get("name")) for t in list(ts.targets.values())),
        "thingspace_subscriptions": sorted(str(s.get("name")) for s in list(ts.subscriptions.values())),
        "equinix": sorted(
            json.dumps({"messageType": s["messageType"], "channel": s["channel"]}, sort_keys=True)
            for s in eqx.subscriptions()
        ),
    }
    with stream._lock:
        orgs = list(stream.orgs.values())
        provider = {o.id: o.provider_id for o in orgs}  # contexts keyed by org id read as its provider id

        def contexts(found: Any) -> list[str]:
            return sorted(f"{kind}:{provider.get(key, key)}" for _, kind, key in found)

        flags = {k: contexts(f.contexts) for k, f in stream.flags.items()}
        segments = {k: contexts(s.contexts) for k, s in stream.segments.items()}
        out.update(
            stream_flags={k: v for k, v in flags.items() if v},
            stream_segments={k: v for k, v in segments.items() if v},
            orgs=sorted(o.provider_id for o in orgs),
            partner_tokens=sorted(
                f"{provider.get(t['org_id'])}/{t['token_name']}" for t in stream.partner_tokens.values()
            ),
            integrations=sorted(
                f"{provider.get(i.org_id)}/{i.type}/{i.source}/{i.status}"
                for i in stream.integrations.values()
            ),
            locations=sorted(f"{o.provider_id}/{loc.provider_id}" for o in orgs for loc in o.locations),
            bindings=sorted(
                f"{o.provider_id}/{loc.provider_id}/{d.source}/{d.provider_id}"
                for o in orgs
                for loc in o.locations
                for d in loc.dsps
            ),
            menus=sorted(
                f"{o.provider_id}/{d.provider_id}/{','.join(sorted(d.menu_provider_ids))}"
                for o in orgs
                for loc in o.locations
                for d in loc.dsps
            ),
        )
    return out


def emit(sandbox: Sandbox, plt_events: int, equinix_subscription: str, equinix_events: int) -> dict[str, Any]:
    apps: Any = sandbox.apps
    plt, eqx = apps["plt"], apps["equinix"]
    timetokens: list[int] = []
    with plt._lock:
        streams = [s for p in plt.partners.values() for s in p.streams.values()]
        for s in streams:
            s.started = True
    for s in streams:
        timetokens += plt.emit(s.stream_id, s.tenant_id, plt_events)
    eqx.emit_step = timedelta(minutes=1)  # no weekly heartbeat within the feed
    messages = eqx.emit(equinix_subscription, equinix_events)
    return {"plt": timetokens, "equinix": len(messages)}


def main() -> None:
    state_dir = Path(sys.argv[1])
    sandbox = Sandbox.start(
        state_dir=state_dir, stream={"auto_authorize": True}, dma={"validate_consumer_url": False}
    )
    try:
        assert sandbox.tls is not None
        print(json.dumps({"urls": sandbox.urls(), "ca_pem": sandbox.tls.cert_pem}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            answer: Any
            if op == "state":
                answer = state(sandbox)
            elif op == "progress":
                answer = {name: app.requests.snapshot()["writes"] for name, app in sandbox.apps.items()}
            elif op == "reset":
                for app in sandbox.apps.values():
                    app.reset()
                answer = {"reset": True}
            elif op == "emit":
                answer = emit(
                    sandbox, int(command["plt"]), command["equinix_subscription"], int(command["equinix"])
                )
            else:
                answer = {"error": f"unknown op {op!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
