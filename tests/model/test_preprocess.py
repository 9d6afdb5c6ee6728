"""Frames to pixel values: shape, CLIP normalisation, resizing, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pite_ros.model.config import CLIP_MEAN, CLIP_STD
from pite_ros.model.preprocess import preprocess_frames, resize_for_model


def test_constant_frame_normalised_per_channel():
    frames = np.zeros((2, 50, 70, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 0, 128
    pixels = preprocess_frames(frames, 32, CLIP_MEAN, CLIP_STD)
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == np.float32
    expected = [(1.0 - CLIP_MEAN[0]) / CLIP_STD[0], (0.0 - CLIP_MEAN[1]) / CLIP_STD[1], (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2]]
    for channel in range(3):
        assert np.allclose(pixels[:, channel], expected[channel], atol=1e-5)


def test_whole_frame_is_kept():
    frame = np.zeros((1, 64, 64, 3), np.uint8)
    frame[:, :, :8] = 255  # a bright band at the left edge survives (no centre crop)
    pixels = preprocess_frames(frame, 32, (0, 0, 0), (1, 1, 1))
    assert np.allclose(pixels[0, :, :, :4], 1.0) and np.allclose(pixels[0, :, :, 4:], 0.0)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32), np.zeros((0, 4, 4, 3), np.uint8)])
def test_bad_frames_are_named(bad):
    with pytest.raises(ValueError, match="frame"):
        preprocess_frames(bad, 32, CLIP_MEAN, CLIP_STD)


@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (3, 60, 80, 3), (2, 20, 24, 3)])
def test_pixel_values_are_bit_identical_to_the_plain_formula(shape):
    """In-place normalisation gives exactly ``(resize(x) / 255 - mean) / std`` in float32 (the
    pixel values the shipped model was trained on), for frames at, above and below the size."""
    frames = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    untouched = frames.copy()
    resized = np.stack([resize_for_model(frame, 32) for frame in frames])
    expected = ((resized.astype(np.float32) / 255.0 - np.asarray(CLIP_MEAN, np.float32))
                / np.asarray(CLIP_STD, np.float32)).transpose(0, 3, 1, 2)
    pixels = preprocess_frames(frames, 32, CLIP_MEAN, CLIP_STD)
    assert pixels.dtype == np.float32 and pixels.flags.c_contiguous and np.array_equal(pixels, expected)
    assert np.array_equal(frames, untouched)  # normalised in place on a copy, never on the caller's frames
