"""Point sampling and tracking against drawn motion with known positions (pixels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.annotate.sampling import sample_points
from training.annotate.tracking import TrackerConfig, Tracks, auto_window, track_points

SIZE = 128


def texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth random grey texture (trackable by LK), uint8."""
    noise = rng.random(shape).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 1.5), None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)


def translating_square(frames: int, velocity: tuple[float, float], side: int = 32, start=(20.0, 40.0),
                       occluder: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(grey (T, H, W), masks (T, H, W) of the visible square, offsets (T, 2))``: a textured square
    whose top-left corner is at ``start + t * velocity`` over a textured static background;
    ``occluder``: columns ``[x0, x1)`` of a static textured bar drawn in front of it."""
    rng = np.random.default_rng(1)
    background, patch, bar = texture(rng, (SIZE, SIZE)), texture(rng, (side, side)), texture(rng, (SIZE, SIZE))
    grey = np.empty((frames, SIZE, SIZE), np.uint8)
    masks = np.zeros((frames, SIZE, SIZE), bool)
    offsets = np.array([[start[0] + t * velocity[0], start[1] + t * velocity[1]] for t in range(frames)])
    for t in range(frames):
        shift = np.float32([[1, 0, offsets[t, 0]], [0, 1, offsets[t, 1]]])
        layer = cv2.warpAffine(patch, shift, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(np.ones((side, side), np.float32), shift, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        grey[t] = np.round(alpha * layer + (1 - alpha) * background).astype(np.uint8)
        masks[t] = alpha > 0.5
        if occluder is not None:
            grey[t, :, occluder[0] : occluder[1]] = bar[:, occluder[0] : occluder[1]]
            masks[t, :, occluder[0] : occluder[1]] = False
    return grey, masks, offsets


def test_points_are_inside_and_spread() -> None:
    mask = np.zeros((100, 100), bool)
    cv2.circle(mask.view(np.uint8), (50, 50), 20, 1, -1)
    points = sample_points(mask, 8)
    assert points.shape == (8, 2) and points.dtype == np.float32
    assert mask[points[:, 1].astype(int), points[:, 0].astype(int)].all()
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)[np.triu_indices(8, 1)]
    # 8 points in a disc of radius 18 (20 minus the 2 px margin): farthest-point sampling puts
    # one at the centre and the others on the rim and in between, about 11 px apart at least.
    assert distances.min() > 10.0
    # Random points in the same disc come much closer (a clustered sampler would fail the bound).
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(mask)
    random_min = np.median([np.min(np.linalg.norm(
        (c := np.stack([xs, ys], 1)[rng.choice(len(xs), 8)])[:, None] - c[None], axis=2)[np.triu_indices(8, 1)])
        for _ in range(50)])
    assert random_min < 8.0


def test_tiny_mask_still_gives_every_point() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5, 5] = mask[5, 6] = True
    points = sample_points(mask, 6)
    assert points.shape == (6, 2)
    assert mask[points[:, 1].astype(int), points[:, 0].astype(int)].all()


# (mean error bound in pixels, share of points kept visible): measured 0.05 / 1.0 (LK),
# 0.49 / 0.86 (Farneback), 1.05 / 0.48 (DIS): dense flow blurs the square's edges.
@pytest.mark.parametrize(("method", "bound", "kept"), [("lk", 0.25, 0.95), ("farneback", 0.75, 0.8), ("dis", 1.5, 0.4)])
def test_tracking_error_on_a_translating_square(method: str, bound: float, kept: float) -> None:
    frames = 20
    grey, masks, offsets = translating_square(frames, (1.3, 0.7))
    tracks = track_points(grey, {0: masks[0]}, 12, TrackerConfig(method=method))  # one mask: tracking alone
    assert tracks is not None and tracks.seed_frame == 0
    truth = tracks.points[0][None] + (offsets - offsets[0])[:, None, :]
    error = np.linalg.norm(tracks.points - truth, axis=2)
    assert tracks.visible.mean() > kept
    assert error[tracks.visible].mean() < bound  # pixels, after 19 steps of sub-pixel motion


def test_forward_backward_check_flags_occluded_points() -> None:
    frames = 30
    grey, masks, offsets = translating_square(frames, (2.0, 0.0), start=(10.0, 40.0), occluder=(60, 76))
    config = TrackerConfig()
    tracks = track_points(grey, {0: masks[0]}, 16, config)
    assert tracks is not None
    truth = tracks.points[0][None] + (offsets - offsets[0])[:, None, :]
    x = truth[..., 0]
    half = auto_window((SIZE, SIZE)) // 2
    hidden = (x > 60 + half) & (x < 76 - half)  # the whole LK window behind the bar
    before = x < 60 - 2 * half  # the LK window not yet on the bar
    assert hidden.sum() > 30 and before.sum() > 50
    assert (~tracks.visible[hidden]).mean() > 0.9  # flagged when behind the bar
    assert tracks.visible[before].mean() > 0.9  # and not before
    error = np.linalg.norm(tracks.points - truth, axis=2)
    assert error[tracks.visible & before].mean() < 0.3


def test_lost_points_are_reseeded_from_a_later_mask() -> None:
    grey, masks, offsets = translating_square(20, (1.0, 0.0))
    # A cut at frame 10: the square jumps 40 px down, beyond any flow; masks at every frame.
    shifted_grey, shifted_masks = grey.copy(), masks.copy()
    shifted_grey[10:] = np.roll(grey[10:], 40, axis=1)
    shifted_masks[10:] = np.roll(masks[10:], 40, axis=1)
    tracks = track_points(shifted_grey, dict(enumerate(shifted_masks)), 8, TrackerConfig())
    assert tracks is not None
    for frame in range(12, 20):
        inside = shifted_masks[frame][np.round(tracks.points[frame, :, 1]).astype(int),
                                      np.round(tracks.points[frame, :, 0]).astype(int)]
        assert inside.all() and tracks.visible[frame].all()


def test_empty_masks_give_no_track() -> None:
    grey = np.zeros((3, 16, 16), np.uint8)
    assert track_points(grey, {0: np.zeros((16, 16), bool)}, 4) is None


def test_a_slot_keeps_one_identity_in_the_sampled_frames() -> None:
    # Slot 0 is re-seeded at frame 3 (identity 0 -> 5); sampled frames 0, 2, 4, 5, 6.
    identity = np.zeros((7, 2), dtype=np.int64)
    identity[3:, 0] = 5
    tracks = Tracks(np.zeros((7, 2, 2), np.float32), np.ones((7, 2), bool), 0, identity)
    _, visible = tracks.sampled(np.array([0, 2, 4, 5, 6]))
    # The new identity is seen at 3 sampled frames, the old one at 2: the old frames go invisible.
    assert visible[:, 0].tolist() == [False, False, True, True, True]
    assert visible[:, 1].all()
