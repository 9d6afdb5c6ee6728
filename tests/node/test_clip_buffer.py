"""ClipBuffer: ordering, duplicates, resets, bounds, downscaling, windows and uniform sampling."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pite_ros.model.preprocess import preprocess_frames, resize_for_model
from pite_ros.node.clip_buffer import AddResult, ClipBuffer, downscaled_size

S = 1_000_000_000
T0 = 1_700_000_000 * S


def frame(value: int, width: int = 8, height: int = 6) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def filled(stamps_s: list[float], **kwargs) -> ClipBuffer:
    buffer = ClipBuffer(**kwargs)
    for index, seconds in enumerate(stamps_s):
        buffer.add(T0 + round(seconds * S), "camera", frame(index))
    return buffer


def test_in_order_frames_are_appended_and_described() -> None:
    buffer = ClipBuffer()
    assert buffer.latest_stamp is None and buffer.fill == (0, 0.0) and buffer.clip() is None
    assert [buffer.add(T0 + i * S // 10, "camera", frame(i)) for i in range(3)] == [AddResult.ADDED] * 3
    assert buffer.latest_stamp == T0 + 2 * S // 10
    assert buffer.fill == (3, 0.2)
    clip = buffer.clip()
    assert clip.frame_id == "camera" and (clip.width, clip.height) == (8, 6)
    assert clip.stamps.tolist() == [T0, T0 + S // 10, T0 + 2 * S // 10]
    assert clip.images.shape == (3, 6, 8, 3) and clip.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert (clip.start_ns, clip.end_ns, clip.duration) == (T0, T0 + 2 * S // 10, 0.2)
    assert buffer.stats() == {"frames": 3, "seconds": 0.2, "added": 3, "duplicates": 0, "out_of_order": 0,
                              "resets": 0, "dropped_old": 0}


def test_out_of_order_frames_are_inserted_in_stamp_order() -> None:
    buffer = filled([0.0, 0.3])
    assert buffer.add(T0 + S // 10, "camera", frame(9)) is AddResult.OUT_OF_ORDER
    assert buffer.add(T0 - S // 10, "camera", frame(8)) is AddResult.OUT_OF_ORDER
    clip = buffer.clip()
    assert clip.stamps.tolist() == [T0 - S // 10, T0, T0 + S // 10, T0 + 3 * S // 10]
    assert clip.images[:, 0, 0, 0].tolist() == [8, 0, 9, 1]
    assert buffer.counters.out_of_order == 2 and buffer.counters.added == 4


def test_a_duplicate_stamp_keeps_the_first_frame_and_is_counted() -> None:
    buffer = filled([0.0, 0.1])
    assert buffer.add(T0, "camera", frame(42)) is AddResult.DUPLICATE
    assert buffer.add(T0 + S // 10, "camera", frame(43)) is AddResult.DUPLICATE
    clip = buffer.clip()
    assert clip.images[:, 0, 0, 0].tolist() == [0, 1]
    assert buffer.counters.duplicates == 2 and buffer.counters.added == 2


def test_time_jumping_back_beyond_the_threshold_resets_and_keeps_the_new_frame() -> None:
    buffer = filled([10.0, 10.1, 10.2], jump_back_seconds=0.5)
    assert buffer.add(T0 + round(9.8 * S), "camera", frame(7)) is AddResult.OUT_OF_ORDER  # 0.4 s back: reordering
    assert buffer.add(T0 + round(9.6 * S), "camera", frame(8)) is AddResult.RESET_TIME_JUMP  # 0.6 s back: a new run
    clip = buffer.clip()
    assert clip.stamps.tolist() == [T0 + round(9.6 * S)] and clip.images[0, 0, 0, 0] == 8
    assert buffer.counters.resets == 1 and buffer.last_reset is AddResult.RESET_TIME_JUMP
    assert buffer.add(T0 + round(9.7 * S), "camera", frame(9)) is AddResult.ADDED


def test_frame_id_or_size_changes_reset_so_clips_never_mix_them() -> None:
    buffer = filled([0.0, 0.1])
    assert buffer.add(T0 + 2 * S // 10, "other_camera", frame(5)) is AddResult.RESET_FRAME_ID
    clip = buffer.clip()
    assert clip.frame_id == "other_camera" and len(clip) == 1
    assert buffer.add(T0 + 3 * S // 10, "other_camera", frame(6, width=10)) is AddResult.RESET_SIZE
    clip = buffer.clip()
    assert (clip.width, len(clip)) == (10, 1)
    # The same image size but a different declared source size is a new source too.
    assert buffer.add(T0 + 4 * S // 10, "other_camera", frame(7, width=10), width=20, height=12) is AddResult.RESET_SIZE
    assert buffer.counters.resets == 3 and buffer.last_reset is AddResult.RESET_SIZE


def test_bounds_in_frames_and_seconds_drop_the_oldest() -> None:
    buffer = filled([0.0, 0.1, 0.2, 0.3, 0.4], max_frames=3)
    assert buffer.clip().stamps.tolist() == [T0 + i * S // 10 for i in (2, 3, 4)]
    assert buffer.counters.dropped_old == 2
    buffer = filled([0.0, 0.5, 1.0, 1.5, 2.0], max_seconds=1.0, jump_back_seconds=5.0)
    assert buffer.clip().stamps.tolist() == [T0 + i * S // 2 for i in (2, 3, 4)]  # 1.0 s before 2.0 is kept
    assert buffer.counters.dropped_old == 2
    # A late frame older than the window is dropped on arrival and counted the same way.
    assert buffer.add(T0 + round(0.9 * S), "camera", frame(9)) is AddResult.TOO_OLD
    assert buffer.fill == (3, 1.0) and buffer.counters.dropped_old == 3 and buffer.counters.added == 5


def test_images_are_downscaled_but_the_source_size_is_remembered() -> None:
    buffer = ClipBuffer(max_side=320)
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, 320:] = 200  # right half bright
    buffer.add(T0, "camera", image)
    clip = buffer.clip()
    assert clip.images.shape == (1, 240, 320, 3) and (clip.width, clip.height) == (640, 480)
    assert clip.images[0, 0, 0, 0] == 0 and clip.images[0, 0, -1, 0] == 200
    restored = clip.last_image_at_source_size()
    assert restored.shape == (480, 640, 3) and restored[0, 0, 0] == 0 and restored[0, -1, 0] == 200
    assert downscaled_size(640, 480, 320) == (320, 240)
    assert downscaled_size(480, 1000, 100) == (48, 100)
    assert downscaled_size(30, 20, 320) == (30, 20) and downscaled_size(3000, 1, 300) == (300, 1)


def test_model_size_copies_follow_the_frames_and_give_the_same_pixel_values() -> None:
    """Frames resized on arrival (``model_size``) preprocess to exactly what the camera frames give,
    and stay paired with their frames through reordering, trimming, sampling and resets."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(5)]
    buffer = ClipBuffer(max_side=320, model_size=32, max_frames=4)
    for index in (0, 2, 1, 3, 4):  # frame 1 arrives late; frame 0 is trimmed by max_frames
        buffer.add(T0 + index * S // 10, "camera", images[index])
    clip = buffer.clip()
    assert clip.images.shape == (4, 240, 320, 3) and clip.model_images.shape == (4, 32, 32, 3)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    assert np.array_equal(preprocess_frames(clip.model_images, 32, mean, std), preprocess_frames(clip.images, 32, mean, std))
    sampled = clip.sample(6)
    assert [id(m) for m in sampled.model_frames] == [id(clip.model_frames[i]) for i in clip.sample_indices(6)]
    assert np.array_equal(sampled.model_images[0], resize_for_model(sampled.frames[0], 32))
    plain = filled([0.0, 0.1])
    assert plain.clip().model_frames is None and plain.clip().model_images.shape == (2, 6, 8, 3)
    buffer.add(T0 + S // 10, "other_camera", images[0])  # a reset drops the copies with the frames
    assert len(buffer.clip().model_frames) == 1 and buffer.clip().model_images.shape == (1, 32, 32, 3)
    buffer.clear()
    assert buffer.clip() is None


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(h, w, 3\) uint8"):
        ClipBuffer().add(T0, "camera", np.zeros((4, 4), np.uint8))


def test_clip_windows() -> None:
    buffer = filled([0.0, 1.0, 2.0, 3.0, 4.0])
    stamps = lambda clip: [(s - T0) / S for s in clip.stamps.tolist()]  # noqa: E731
    assert stamps(buffer.clip(T0 + S, T0 + 3 * S)) == [1.0, 2.0, 3.0]
    assert stamps(buffer.clip(start_ns=T0 + round(2.5 * S))) == [3.0, 4.0]
    assert stamps(buffer.clip(end_ns=T0 + round(1.5 * S))) == [0.0, 1.0]
    assert stamps(buffer.clip(seconds=2.0)) == [2.0, 3.0, 4.0]
    assert stamps(buffer.clip(end_ns=T0 + 3 * S, seconds=1.0)) == [2.0, 3.0]
    assert stamps(buffer.clip(max_frames=2)) == [3.0, 4.0]
    assert buffer.clip(T0 + round(1.2 * S), T0 + round(1.8 * S)) is None
    assert buffer.clip(T0 + 10 * S) is None
    buffer.clear()
    assert buffer.clip() is None and buffer.counters.added == 5


def test_sampling_picks_the_frame_nearest_each_uniform_time() -> None:
    # Window 0..9 s, 3 slices: centres 1.5, 4.5, 7.5 s -> nearest 1.0, 5.0, 9.0.
    clip = filled([0.0, 1.0, 2.2, 3.0, 5.0, 9.0]).clip()
    assert clip.sample_indices(3).tolist() == [1, 4, 5]
    sampled = clip.sample(3)
    assert sampled.stamps.tolist() == [T0 + S, T0 + 5 * S, T0 + 9 * S]
    assert sampled.images[:, 0, 0, 0].tolist() == [1, 4, 5]
    assert (sampled.start_ns, sampled.end_ns, sampled.frame_id, sampled.width) == (T0, T0 + 9 * S, "camera", 8)
    # Window 0..4 s, 2 slices: centres 1.0 (exact) and 3.0, a tie between 2.0 and 4.0: the earlier.
    assert filled([0.0, 1.0, 2.0, 4.0]).clip().sample_indices(2).tolist() == [1, 2]
    # Fewer frames than asked: frames repeat; one frame: it is every sample.
    assert filled([0.0, 1.0]).clip().sample_indices(4).tolist() == [0, 0, 1, 1]
    assert filled([0.0]).clip().sample(3).stamps.tolist() == [T0] * 3
    with pytest.raises(ValueError, match="positive"):
        clip.sample_indices(0)


def test_sampling_matches_a_brute_force_nearest_search() -> None:
    rng = np.random.default_rng(3)
    seconds = np.sort(rng.choice(np.arange(0, 20, 0.033), size=200, replace=False))
    clip = filled(seconds.tolist(), max_frames=1000).clip()
    from pite_ros.video import uniform_frame_times

    times = uniform_frame_times(0.0, seconds[-1] - seconds[0], 16)
    offsets = (clip.stamps - clip.start_ns) / S
    expected = [int(np.argmin(np.abs(offsets - t))) for t in times]
    assert clip.sample_indices(16).tolist() == expected


def test_concurrent_adders_and_readers_keep_the_buffer_consistent() -> None:
    buffer = ClipBuffer(max_frames=10_000, max_seconds=600)
    image = frame(1)

    def add(offset: int) -> None:
        for i in range(400):
            buffer.add(T0 + (2 * i + offset) * S // 1000, "camera", image)

    def read() -> None:
        for _ in range(200):
            clip = buffer.clip()
            assert clip is None or bool(np.all(np.diff(clip.stamps) > 0))

    threads = [threading.Thread(target=add, args=(k,)) for k in (0, 1, 0)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = buffer.counters
    assert buffer.fill[0] == 800 and counters.added == 800 and counters.duplicates == 400
    assert np.all(np.diff(buffer.clip().stamps) == S // 1000)


def test_window_problem_names_the_bad_bound() -> None:
    buffer = ClipBuffer(max_seconds=30.0)
    assert buffer.window_problem() == "no images buffered yet"
    for index in range(5):  # 10.0, 10.5, ..., 12.0 s
        buffer.add(10 * S + index * S // 2, "cam", np.zeros((4, 4, 3), np.uint8))
    assert buffer.window_problem() == "" and buffer.window_problem(11 * S, 12 * S) == ""
    assert buffer.window_problem(12 * S, 11 * S) == "clip_end 11.000000000 s is before clip_start 12.000000000 s"
    assert buffer.window_problem(None, 9 * S) == ("clip_end 9.000000000 s is before the oldest buffered image "
                                                  "(10.000000000 s; the buffer keeps 30 s)")
    assert buffer.window_problem(13 * S, None) == ("clip_start 13.000000000 s is after the newest buffered image "
                                                   "(12.000000000 s)")
    assert buffer.window_problem(10 * S + 1, 10 * S + 2) == "no buffered image lies between clip_start and clip_end"
    assert buffer.clip(10 * S + 1, 10 * S + 2) is None  # the same rule as clip()
