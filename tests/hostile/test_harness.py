"""The hostile-client harness in its short form: every scenario against every listener, with a bystander that
must keep working and a broker that must log no error. ``python tests/hostile/harness.py --long`` is the long
form (docs/reliability.md)."""

from __future__ import annotations

import harness


def test_short_hostile_run() -> None:
    lines: list[str] = []
    results = harness.run(harness.SHORT, seed=1, report=lines.append)
    assert all(r.ok for r in results), "\n".join(lines)
    scenarios = {(r.scenario, r.listener) for r in results}
    for listener in ("mqtt", "web_mqtt"):
        for scenario in ("fuzz", "slow-loris", "non-reader", "oversized"):
            assert (scenario, listener) in scenarios
    assert ("deep-topics", "mqtt") in scenarios


def test_mutations_change_the_input_and_stay_bytes() -> None:
    import random

    rng = random.Random(5)
    seed = bytes(range(64))
    mutated = [harness.mutate(seed, rng) for _ in range(200)]
    assert all(isinstance(m, bytes) for m in mutated)
    assert sum(m != seed for m in mutated) > 190
