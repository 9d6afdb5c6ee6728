"""conversions: AnswerResult -> Answer/TrackArray, checked against hand-computed pixels, stamps and ids."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time

from pite_msgs.msg import TrackPoint
from pite_ros.node.clip_buffer import Clip
from pite_ros.node.conversions import (
    clamp_score,
    ns_to_time,
    seconds_to_duration,
    time_to_ns,
    to_messages,
    track_ids,
    track_slug,
)
from pite_ros.types import AnswerResult, PhraseTrack, TimeSegment

S = 1_000_000_000
T0 = 1_700_000_000 * S
TEXT = "From <30> to <150>, the red circle moves; a red circle waits by the blue square."
RENDERED = "From 0.1s to 0.5s, the red circle moves; a red circle waits by the blue square."


def sampled_frames() -> Clip:
    """4 frames the model saw; rows 1 and 2 are the same source frame (a short clip repeats frames)."""
    stamps = np.array([T0, T0 + S // 2, T0 + S // 2, T0 + S], dtype=np.int64)
    return Clip(stamps=stamps, frames=(np.zeros((3, 4, 3), np.uint8),) * 4, frame_id="cam",
                width=640, height=480, start_ns=T0, end_ns=T0 + S)


def phrase(text: str, score: float, trajectory) -> PhraseTrack:
    start = TEXT.index(text)
    return PhraseTrack(text=text, span=(start, start + len(text)), trajectory=np.asarray(trajectory, float),
                       score=score)


RED = [
    [[0.5, 0.25], [0.25, 0.5]],
    [[0.1, 0.2], [0.3, 0.4]],
    [[0.3, 0.4], [0.5, 0.6]],
    [[1.0, 1.0], [np.nan, 0.5]],
]


def result() -> AnswerResult:
    return AnswerResult(
        text=TEXT,
        phrases=[phrase("the red circle", 1.3, RED), phrase("a red circle", 0.5, np.zeros((4, 1, 2))),
                 phrase("the blue square", -0.2, np.zeros((4, 1, 2)))],
        segments=[TimeSegment(start=0.5, end=0.1, text="moves")],
        token_ids=[1, 2, 3],
        frame_times=np.array([0.125, 0.375, 0.625, 0.875]),
    )


def stamp(seconds: float) -> Time:
    return ns_to_time(T0 + round(seconds * S))


def test_answer_and_tracks_in_source_pixels_and_stamps() -> None:
    answer, tracks = to_messages(result(), sampled_frames(), question="what moves?", query_id="q7",
                                 model_name="tiny", inference_seconds=1.25, score_threshold=0.1)
    assert answer.header.frame_id == "cam" and answer.header.stamp == stamp(1.0)
    assert (answer.clip_start, answer.clip_end) == (stamp(0.0), stamp(1.0))
    assert (answer.frame_count, answer.width, answer.height) == (4, 640, 480)
    assert (answer.query_id, answer.question, answer.model_name) == ("q7", "what moves?", "tiny")
    assert answer.inference_time == Duration(sec=1, nanosec=250_000_000)
    assert answer.text == RENDERED

    assert [t.id for t in answer.tracks] == ["red-circle", "red-circle-2"]  # the blue square scores below 0.1
    red = answer.tracks[0]
    assert red.phrase == "the red circle" and red.score == 1.0
    assert RENDERED[red.span_start:red.span_end] == "the red circle"
    second = answer.tracks[1]
    assert RENDERED[second.span_start:second.span_end] == "a red circle" and second.score == 0.5

    # Row 0 at T0; rows 1-2 share T0 + 0.5 s and are averaged; row 3's NaN point is dropped.
    expected = [(0.0, 0, 320.0, 120.0), (0.0, 1, 160.0, 240.0), (0.5, 0, 128.0, 144.0), (0.5, 1, 256.0, 240.0),
                (1.0, 0, 640.0, 480.0)]
    got = [(p.stamp, p.point_id, p.x, p.y) for p in red.points]
    assert got == [(stamp(t), i, pytest.approx(x), pytest.approx(y)) for t, i, x, y in expected]
    assert all(p.score == 1.0 and p.state == TrackPoint.STATE_OBSERVED for p in red.points)
    centroid = [(p.stamp, p.x, p.y) for p in red.centroid]
    assert centroid == [(stamp(0.0), 240.0, 180.0), (stamp(0.5), pytest.approx(192.0), pytest.approx(192.0)),
                        (stamp(1.0), 640.0, 480.0)]

    segment = answer.segments[0]
    assert (segment.start, segment.end, segment.text) == (stamp(0.1), stamp(0.5), "moves")

    assert tracks.header == answer.header and tracks.query_id == "q7"
    assert (tracks.clip_start, tracks.clip_end, tracks.width, tracks.height) == (stamp(0.0), stamp(1.0), 640, 480)
    assert tracks.tracks == answer.tracks


def test_explicit_clip_window_moves_segments_and_header() -> None:
    answer, _ = to_messages(result(), sampled_frames(), question="q", query_id="continuous", model_name="m",
                            inference_seconds=0.0, clip_start_ns=T0 - S, clip_end_ns=T0 + 3 * S)
    # Duration 4 s: <30> is 0.4 s, <150> is 2.0 s; segments count from T0 - 1 s.
    assert answer.text.startswith("From 0.4s to 2.0s, the red circle")
    assert answer.header.stamp == stamp(3.0) and answer.clip_start == stamp(-1.0)
    assert (answer.segments[0].start, answer.segments[0].end) == (stamp(-0.9), stamp(-0.5))
    assert len(answer.tracks) == 3 and answer.tracks[2].id == "blue-square" and answer.tracks[2].score == 0.0


def test_a_trajectory_with_the_wrong_number_of_rows_is_named() -> None:
    bad = result()
    bad.phrases = [phrase("the red circle", 0.5, np.zeros((3, 2, 2)))]
    expected = r"trajectory of 'the red circle' has shape \(3, 2, 2\); expected \(4, points, 2\)"
    with pytest.raises(ValueError, match=expected):
        to_messages(bad, sampled_frames(), question="q", query_id="q", model_name="m", inference_seconds=0.0)


def test_slugs_and_unique_ids() -> None:
    assert track_slug("the red circle") == "red-circle"
    assert track_slug("The Big  Dog!") == "big-dog"
    assert track_slug("an apple") == "apple"
    assert track_slug("Person #2") == "person-2"
    assert track_slug("the") == "object"
    assert track_ids(["the red circle", "a red circle", "red circle 2", "dog"]) == [
        "red-circle", "red-circle-2", "red-circle-2-2", "dog"]


def test_time_helpers() -> None:
    assert ns_to_time(T0 + 5) == Time(sec=1_700_000_000, nanosec=5)
    assert ns_to_time(-1) == Time(sec=-1, nanosec=999_999_999) and time_to_ns(ns_to_time(-1)) == -1
    assert time_to_ns(Time(sec=3, nanosec=7)) == 3 * S + 7
    assert seconds_to_duration(0.000000002) == Duration(sec=0, nanosec=2)
    assert (clamp_score(float("nan")), clamp_score(2.0), clamp_score(-1.0), clamp_score(0.25)) == (0.0, 1.0, 0.0, 0.25)


def test_rendering_time_tokens_carries_character_offsets() -> None:
    from pite_ros.model.temporal import render_time_tokens

    text = "at <3> a dog <999> runs"
    rendered, offsets = render_time_tokens(text, 10.0, 300)
    assert rendered == "at 0.1s a dog <999> runs"
    assert len(offsets) == len(text) + 1 and offsets[-1] == len(rendered)
    dog = text.index("dog")
    assert rendered[offsets[dog]:offsets[dog + 3]] == "dog"
    assert offsets[text.index("<3>") + 1] == rendered.index("0.1s")  # inside a token: its rendering's start


def test_points_the_visibility_head_calls_hidden_are_published_occluded() -> None:
    visible = result()
    # rows 1 and 2 are one source frame: their mean decides (0.3 and 0.6 -> 0.45: hidden; 0.9, 0.2 -> 0.55: seen)
    visible.phrases[0].visibility = np.array([[0.9, 0.1], [0.3, 0.9], [0.6, 0.2], [0.0, 0.7]])
    answer, _ = to_messages(visible, sampled_frames(), question="q", query_id="q", model_name="m",
                            inference_seconds=0.0)
    red = answer.tracks[0]
    states = [(p.stamp, p.point_id, p.state) for p in red.points]
    occluded, observed = TrackPoint.STATE_OCCLUDED, TrackPoint.STATE_OBSERVED
    assert states == [(stamp(0.0), 0, observed), (stamp(0.0), 1, occluded), (stamp(0.5), 0, occluded),
                      (stamp(0.5), 1, observed), (stamp(1.0), 0, occluded)]  # row 3's NaN point 1 is dropped
    # the centroid of a frame is that of its visible points, OCCLUDED when none is visible
    centroid = [(p.stamp, p.x, p.y, p.state) for p in red.centroid]
    assert centroid == [(stamp(0.0), 320.0, 120.0, observed), (stamp(0.5), pytest.approx(256.0), pytest.approx(240.0), observed),
                        (stamp(1.0), 640.0, 480.0, occluded)]
    wrong = result()
    wrong.phrases[0].visibility = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"visibility of 'the red circle' has shape \(4, 3\); expected \(4, 2\)"):
        to_messages(wrong, sampled_frames(), question="q", query_id="q", model_name="m", inference_seconds=0.0)


@pytest.mark.parametrize("backend", ["rules", "spacy"])
def test_phrases_of_answers_with_times_index_the_published_text_and_keep_their_ids(backend: str) -> None:
    """The engine's phrases come from the raw text with temporal tokens (generation's phrase_fn);
    a phrase never carries a piece of one (issue 35: ``191> large yellow circle``)."""
    from pite_ros import text as text_module

    if backend == "spacy" and text_module._spacy_pipeline() is None:
        pytest.skip("spaCy model not installed")
    ids = []
    for times in (("<191>", "<150>"), ("<200>", "<30>")):
        raw = f"{times[0]} large yellow circle moves left and {times[1]} the large yellow circle stops."
        phrases = [PhraseTrack(text=raw[a:b], span=(a, b), trajectory=np.zeros((4, 1, 2)), score=0.9)
                   for a, b in text_module.noun_phrases(raw, backend)]
        answer, _ = to_messages(AnswerResult(text=raw, phrases=phrases, segments=[], token_ids=[],
                                             frame_times=np.zeros(4)),
                                sampled_frames(), question="q", query_id="q1", model_name="m", inference_seconds=0.1)
        assert [t.phrase for t in answer.tracks] == ["large yellow circle", "the large yellow circle"]
        assert all(answer.text[t.span_start:t.span_end] == t.phrase for t in answer.tracks)
        ids.append([t.id for t in answer.tracks])
    assert ids[0] == ids[1] == ["large-yellow-circle", "large-yellow-circle-2"]
