"""One synthetic clip or image: render it, write its media and ground truth, build its records.

Each item draws from its own random stream ``(seed, split, kind, index)``, so items can be
made in any order or process and the same seed always gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pite_ros.video import nearest_frame_indices, uniform_frame_times
from training.datasets.layout import stage2_file_name
from training.synth import language
from training.synth.events import Event, scene_events
from training.synth.groundtruth import GroundTruth, save_ground_truth
from training.synth.render import Rendering, point_offsets, render
from training.synth.world import Scene, WorldConfig, sample_scene, sample_still_scene

SPLITS = {"train": 0, "eval": 1}
VIDEO, IMAGE = 0, 1
FOURCC = "mp4v"  # MPEG-4 part 2: OpenCV 5's bundled FFmpeg both writes and reads it.
STAGE_FILES = (
    "stage1.jsonl",
    "stage2.jsonl",
    "stage3_conversations.jsonl",
    "stage3_grounding.jsonl",
    "stage3_dense.jsonl",
    "stage3_mcq.jsonl",
)


def stage2_file(frames: int, config: WorldConfig) -> str:
    """``stage2.jsonl`` for ``config.num_frames``, ``stage2_{N}f.jsonl`` for an extra N."""
    return "stage2.jsonl" if frames == config.num_frames else stage2_file_name(frames)


def stage_files(config: WorldConfig) -> tuple[str, ...]:
    """Every JSONL file a data set of ``config`` has: ``STAGE_FILES`` and the extra stage-2 ones."""
    return STAGE_FILES + tuple(stage2_file(n, config) for n in config.extra_num_frames)


def item_rng(seed: int, split: str, kind: int, index: int) -> np.random.Generator:
    """The random stream of one item."""
    return np.random.default_rng([seed, SPLITS[split], kind, index])


def item_id(split: str, kind: int, index: int) -> str:
    """``train_v000012`` for clips, ``train_i000012`` for stage-1 images."""
    return f"{split}_{'v' if kind == VIDEO else 'i'}{index:06d}"


def _round(values: np.ndarray, digits: int) -> list:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def normalise(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates ``(..., 2)`` to [0, 1] image units ``(x + 0.5) / width``, clipped."""
    return np.clip((points + 0.5) / np.array([width, height]), 0.0, 1.0)


def point_tracks(scene: Scene, rendering: Rendering, index: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage-2 trajectory ``(N, P, 2)`` normalised and visibility ``(N, P)`` of object ``index``, N = ``frames``.

    Frame ``k`` is the rendered frame ``read_frames`` decodes for
    ``uniform_frame_times(0, duration, N)[k]``. Points are fixed offsets inside the shape
    (``render.point_offsets``); a point is visible when its pixel lies in the frame and
    belongs to this object (not hidden by a nearer one). Coordinates outside the frame are
    clipped to [0, 1] (with visibility 0).
    """
    config = scene.config
    spec = scene.objects[index]
    times = uniform_frame_times(0.0, float(scene.seconds), frames)
    shown = nearest_frame_indices(times, config.fps, scene.frame_count)
    offsets = point_offsets(spec.shape, config.num_points) * spec.radius
    points = rendering.centres[index, shown][:, None, :] + offsets[None]
    pixels = np.round(points).astype(int)
    inside = (
        (pixels[..., 0] >= 0) & (pixels[..., 0] < config.width) & (pixels[..., 1] >= 0) & (pixels[..., 1] < config.height)
    )
    xs, ys = np.clip(pixels[..., 0], 0, config.width - 1), np.clip(pixels[..., 1], 0, config.height - 1)
    owner = rendering.labels[shown[:, None], ys, xs]
    return normalise(points, config.width, config.height), inside & (owner == index)


def object_facts(scene: Scene, events: list[list[Event]]) -> list[dict]:
    """The ``objects`` list of a ground-truth json."""
    return [
        {
            "id": f"obj{spec.index}",
            "index": spec.index,
            "phrase": spec.name,
            "colour": spec.colour,
            "shape": spec.shape,
            "size": spec.size,
            "radius": round(spec.radius, 3),
            "depth": spec.depth,
            "events": [e.to_json() for e in events[spec.index]],
        }
        for spec in scene.objects
    ]


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """Write ``(T, H, W, 3)`` RGB frames as an mp4 (``FOURCC``)."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _truth(item: str, scene: Scene, rendering: Rendering, events: list[list[Event]]) -> GroundTruth:
    config = scene.config
    return GroundTruth(
        id=item,
        width=config.width,
        height=config.height,
        fps=float(config.fps),
        duration=float(scene.seconds),
        times=rendering.times,
        masks=rendering.masks,
        centres=rendering.centres,
        visible=rendering.masks.any(axis=(2, 3)),
        objects=object_facts(scene, events),
    )


def well_seen(rendering: Rendering, fps: int) -> bool:
    """Every object shows at least half of its area for at least a second (not hidden all along)."""
    area = rendering.silhouettes.sum(axis=(2, 3)).max(axis=1, keepdims=True)
    shown = rendering.masks.sum(axis=(2, 3)) >= 0.5 * np.maximum(area, 1)
    return bool((shown.sum(axis=1) >= fps).all())


def _visible_scene(rng: np.random.Generator, config: WorldConfig) -> tuple[Scene, Rendering]:
    """A sampled scene whose objects are all ``well_seen`` (resampled from the same stream)."""
    for _ in range(100):  # about 1 scene in 150 is resampled
        scene = sample_scene(rng, config)
        rendering = render(scene, scene.frame_times())
        if well_seen(rendering, config.fps):
            return scene, rendering
    raise RuntimeError(f"no scene with every object in view in 100 draws for {config}")


def video_item(out: Path, split: str, seed: int, index: int, config: WorldConfig) -> dict[str, list[dict]]:
    """Render clip ``index``; write its mp4 and ground truth; return its stage-2/3 records."""
    rng = item_rng(seed, split, VIDEO, index)
    item = item_id(split, VIDEO, index)
    scene, rendering = _visible_scene(rng, config)
    events = scene_events(scene, rendering)
    write_video(out / "videos" / f"{item}.mp4", rendering.frames, config.fps)
    save_ground_truth(out / "gt", _truth(item, scene, rendering, events))
    video = f"videos/{item}.mp4"
    duration = float(scene.seconds)

    text, phrases = language.caption(scene, events)
    records: dict[str, list[dict]] = {name: [] for name in stage_files(config)}
    for frames in (config.num_frames, *config.extra_num_frames):
        tracks = {spec.index: point_tracks(scene, rendering, spec.index, frames) for spec in scene.objects}
        records[stage2_file(frames, config)].append({
            "id": item,
            "video": video,
            "clip": [0.0, duration],
            "caption": text,
            "num_frames": frames,
            "num_points": config.num_points,
            "width": config.width,
            "height": config.height,
            "phrases": [
                {
                    "text": p.text,
                    "span": [p.start, p.end],
                    "trajectory": _round(tracks[p.object][0], 4),
                    "visibility": tracks[p.object][1].astype(int).tolist(),
                }
                for p in phrases
            ],
        })

    qas = language.questions(scene, events)
    asked = language.choose(rng, qas, int(rng.integers(1, 4)))
    turns = []
    for number, qa in enumerate(asked):
        question = f"<video>\n{qa.question}" if number == 0 else qa.question
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": f"{qa.answer}."}]
    records["stage3_conversations.jsonl"].append(
        {"id": f"{item}_conv", "video": video, "conversations": turns, "kinds": [qa.kind for qa in asked]}
    )

    queries = language.grounding_queries(scene, events)
    timed = [(q, found.kind, [s for s in found.segments if s[1] > s[0]]) for q, found in queries.items()]
    timed = [(q, kind, segs) for q, kind, segs in timed if segs]
    for number, (query, kind, segments) in enumerate(language.choose(rng, timed, 2)):
        records["stage3_grounding.jsonl"].append(
            {"id": f"{item}_g{number}", "video": video, "duration": duration, "query": query, "kind": kind,
             "timestamps": [_round(s, 3) for s in segments]}
        )
    dense = sorted((s, q) for q, _, segs in timed for s in segs)
    if dense:
        records["stage3_dense.jsonl"].append(
            {"id": f"{item}_dense", "video": video, "duration": duration,
             "events": [{"timestamps": _round(s, 3), "caption": q} for s, q in dense]}
        )

    choices = [qa for qa in qas if qa.pool is not None]
    for number, qa in enumerate(language.choose(rng, choices, 1)):
        distractors = [o for o in qa.pool if o != qa.answer]
        options = [qa.answer, *language.choose(rng, distractors, 3)]
        order = [int(i) for i in rng.permutation(len(options))]
        record = {"id": f"{item}_mcq{number}", "video": video, "duration": duration, "kind": qa.kind,
                  "question": qa.question, "options": [options[i] for i in order], "answer": order.index(0)}
        if qa.segment is not None and qa.segment[1] > qa.segment[0]:
            record["timestamps"] = [_round(qa.segment, 3)]
        records["stage3_mcq.jsonl"].append(record)
    return records


def image_item(out: Path, split: str, seed: int, index: int, config: WorldConfig) -> dict[str, list[dict]]:
    """Render stage-1 image ``index`` with a narration and a mouse trace over each named object.

    Each word is one utterance of 0.25-0.45 s. While an object's words are spoken the trace
    hovers near its centre (within a quarter of its radius, sampled every 0.1 s); filler
    words ("there is", "and") have no trace points (the mouse rests), so they get no target.
    """
    rng = item_rng(seed, split, IMAGE, index)
    item = item_id(split, IMAGE, index)
    scene = sample_still_scene(rng, config)
    rendering = render(scene, np.array([0.5]))
    cv2.imwrite(str(out / "images" / f"{item}.png"), cv2.cvtColor(rendering.frames[0], cv2.COLOR_RGB2BGR))
    save_ground_truth(out / "gt", _truth(item, scene, rendering, [[] for _ in scene.objects]))

    tokens, text = language.narration(scene)
    clock = 0.4
    timed, spoken = [], {}
    for word, owner in tokens:
        if word in ",.":
            clock += 0.1
            continue
        end = clock + float(rng.uniform(0.25, 0.45))
        timed.append({"utterance": word, "start_time": round(clock, 3), "end_time": round(end, 3)})
        if owner is not None:
            first, _ = spoken.get(owner, (clock, end))
            spoken[owner] = (first, end)
        clock = end + 0.05
    traces = []
    for owner, (first, last) in spoken.items():
        spec = scene.objects[owner]
        times = np.round(np.arange(first, last + 1e-9, 0.1), 3)
        angle = rng.uniform(0, 2 * np.pi, len(times))
        reach = 0.25 * spec.radius * np.sqrt(rng.uniform(0, 1, len(times)))
        pixels = np.asarray(spec.origin) + np.stack([reach * np.cos(angle), reach * np.sin(angle)], axis=1)
        xy = normalise(pixels, config.width, config.height)
        traces.append([{"x": round(float(x), 4), "y": round(float(y), 4), "t": float(t)}
                       for (x, y), t in zip(xy, times)])
    record = {
        "dataset_id": "pite_synth",
        "image_id": item,
        "annotator_id": 0,
        "caption": text,
        "timed_caption": timed,
        "traces": traces,
        "voice_recording": "",
        "image": f"images/{item}.png",
    }
    return {name: [record] if name == "stage1.jsonl" else [] for name in STAGE_FILES}
