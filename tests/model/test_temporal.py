"""Temporal tokens: seconds -> token -> seconds within D/M, and segment parsing."""

from __future__ import annotations

import numpy as np
import pytest

from pite_ros.model.temporal import (
    index_to_seconds,
    parse_segments,
    seconds_to_index,
    seconds_to_token,
    strip_time_tokens,
    temporal_vocabulary,
)


@pytest.mark.parametrize("duration", [6.0, 37.5, 612.0])
def test_round_trip_within_a_bin(duration):
    for seconds in np.linspace(0.0, duration, 97):
        token = seconds_to_token(seconds, duration)
        index = int(token[1:-1])
        assert token == f"<{index}>"
        assert abs(index_to_seconds(index, duration) - seconds) <= duration / 300 / 2 + 1e-9


def test_indices_clamped_and_vocabulary():
    assert seconds_to_index(-3.0, 10.0) == 0
    assert seconds_to_index(11.0, 10.0) == 300
    assert temporal_vocabulary(300)[0] == "<0>" and temporal_vocabulary(300)[-1] == "<300>"
    assert len(temporal_vocabulary(300)) == 301


def test_parse_from_to():
    segments = parse_segments("From <47> to <83>.", 30.0)
    assert len(segments) == 1
    assert segments[0].start == pytest.approx(30.0 * 47 / 300)
    assert segments[0].end == pytest.approx(30.0 * 83 / 300)


def test_parse_several_reversed_and_out_of_range():
    text = "from <30> to <60>, a red circle moves left. from <90> to <10>, it stops. <400> to <500>."
    segments = parse_segments(text, 6.0)
    assert [(s.start, s.end) for s in segments] == [pytest.approx((0.6, 1.2)), pytest.approx((0.2, 1.8))]
    assert segments[0].text == "a red circle moves left"
    assert strip_time_tokens("from <30> to <60>, a circle") == "from to , a circle"
