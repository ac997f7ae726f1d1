"""plan and apply against each vendor's emulator: the terraform-like lifecycle, write calls counted.

For every vendor: plan on an empty vendor, apply, plan again (nothing, no write), apply again (no write),
change one field (one change), apply; a subscription deleted behind our back is recreated; one created
behind our back is reported and left alone, and deleted only with prune. The history must match.
"""

from __future__ import annotations

from conftest import Kit  # tests/provision/conftest.py


def _actions(plan: object) -> list[str]:
    return [c.action for c in plan.pending()]  # type: ignore[attr-defined]


def _current(kit: Kit) -> list[tuple[str, str]]:
    frame = kit.store.query(
        "SELECT name, change FROM current_subscriptions WHERE vendor = ? AND kind IS DISTINCT FROM 'ts.target' "
        "ORDER BY name",
        [kit.vendor],
    )
    return list(frame.itertuples(index=False, name=None))


def test_lifecycle(kit: Kit) -> None:
    declared = (
        len([r for r in kit.adapter().desired([])[0] if r.type == "subscription"]) or kit.spec().count()
    )

    # an empty vendor: everything to create, and planning wrote nothing
    writes = kit.writes
    plan = kit.plan()
    assert plan.errors == [] and plan.exit_code == 2
    assert set(_actions(plan)) == {"create"}
    assert kit.writes == writes

    outcomes = kit.apply(plan)
    assert [o.detail for o in outcomes if not o.ok] == []
    assert kit.counts(kit) == declared
    assert all(change == "created" for _, change in _current(kit))

    # plan again: nothing to do, no write; apply again: still no write
    writes = kit.writes
    again = kit.plan()
    assert again.exit_code == 0, again.render()
    assert kit.apply(again) == []
    assert kit.writes == writes

    # one field changed in the spec: exactly one change, then nothing
    changed = kit.plan(changed=True)
    assert _actions(changed) == [kit.changed_action], changed.render()
    assert kit.writes == writes
    assert all(o.ok for o in kit.apply(changed, changed=True))
    assert kit.plan(changed=True).exit_code == 0
    assert kit.counts(kit) == declared

    # deleted behind our back: recreated
    kit.delete_behind(kit)
    assert kit.counts(kit) == declared - 1
    recreate = kit.plan(changed=True)
    assert _actions(recreate) == ["create"], recreate.render()
    assert all(o.ok for o in kit.apply(recreate, changed=True))
    assert kit.counts(kit) == declared

    # created behind our back: reported, left alone without prune
    kit.create_behind(kit)
    writes = kit.writes
    report = kit.plan(changed=True)
    assert report.exit_code == 0 and len(report.unmanaged) == 1, report.render()
    assert "not in spec" in report.render()
    assert kit.apply(report, changed=True) == [] and kit.writes == writes
    assert kit.counts(kit) == declared + 1

    # ... and deleted with prune
    pruned = kit.plan(changed=True, prune=True)
    assert _actions(pruned) == ["delete"], pruned.render()
    assert all(o.ok for o in kit.apply(pruned, changed=True))
    assert kit.counts(kit) == declared
    assert kit.plan(changed=True, prune=True).exit_code == 0

    # the history's current rows are exactly the spec's subscriptions
    names = sorted(
        r.name for r in kit.adapter(changed=True).desired([])[0] if r.type == "subscription" and r.name
    )
    if names:
        assert [name for name, _ in _current(kit)] == names
