"""Rate-limited warnings: one per kind and period, the held-back count said, kinds independent."""

from __future__ import annotations

from pite_ros.node.throttle import Throttle


def test_each_kind_passes_once_per_period_and_says_how_many_were_held_back() -> None:
    lines: list[str] = []
    now = [100.0]
    warn = Throttle(lines.append, clock=lambda: now[0])
    assert warn("image", 5.0, "image refused: a")
    assert warn("query", 2.0, "query rejected: b")  # another kind, another limit: no interference
    assert not warn("image", 5.0, "image refused: c") and not warn("query", 2.0, "query rejected: d")
    now[0] += 2.5
    assert warn("query", 2.0, "query rejected: e") and not warn("image", 5.0, "image refused: f")
    now[0] += 2.5
    assert warn("image", 5.0, "image refused: g")
    assert lines == ["image refused: a", "query rejected: b", "query rejected: e (1 more held back since the last one)",
                     "image refused: g (2 more held back since the last one)"]
