"""How close an ONNX export is to the torch model: parity (fp32) and agreement (int8, fp16).

Probes are synthetic clips (a disc of random colour moving in a straight line over a plain
background, the model's number of frames) with fixed questions, seeded, so every export is
checked on the same inputs; held-out probes (another seed, other questions) measure the
agreement of the reduced-precision variants.

Parity (``check_parity``), the gate of an fp32 export:
- the visual tokens (and patch tokens, for a soft-argmax read-out) of a batch of probes,
  then the decoder over the left-padded batch fed the SAME spliced embeddings on both
  sides: prefill and ``decode_steps`` steps (torch's greedy tokens), each runtime with its
  own KV cache. Max abs differences of logits,
  trajectories (per position) and hidden states, on real positions only: padded positions
  attend to nothing and hold arbitrary values in both runtimes (no per-position
  trajectories for a soft-argmax read-out: its decoder graph has none). Then the projector
  on the last hidden states (with each row's patches).
- greedy answers of every probe through the shared loop: token ids must be identical.
A difference passes when ``diff <= tolerance * max(1, max |torch value|)``: absolute for
values within [-1, 1] (trajectories), relative to the largest value beyond (logits).
Defaults (``Tolerances``): visual tokens and logits 1e-3, trajectories and hidden states
1e-4 (fp32 runtimes agree to ~1e-6 here; the margin covers other CPUs' kernels and deep models).

Agreement (``agreement``) of a variant against torch: torch's greedy answer of each held-out
probe is fed token by token (teacher forcing) to both; the share of steps where the
variant's argmax is torch's token, the max logits difference on that path, and the share
of probes whose free-running greedy answer is identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from pite_ros.engine.onnx_engine import OrtBackend
from pite_ros.engine.onnx_graphs import decoder_outputs
from pite_ros.model.config import PiteConfig
from pite_ros.model.generation import GreedyBackend, advance, generate, start
from pite_ros.model.torch_generation import TorchBackend
from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.processor import PiteProcessor

QUESTIONS = ("describe the video.", "what colour is the circle?", "where does the object move?",
             "when does the object appear?", "what happens in the clip?", "describe the image.")
PROBE_SEED, HELD_OUT_SEED = 0, 1
COMPARED = ("logits", "traj", "hidden")  # decoder outputs compared with torch's DecoderStep


@dataclass(frozen=True)
class Tolerances:
    """Max abs difference allowed, scaled by ``max(1, max |torch value|)`` (see the module doc)."""

    visual: float = 1e-3
    patches: float = 1e-3
    logits: float = 1e-3
    traj: float = 1e-4
    hidden: float = 1e-4
    projector: float = 1e-4


@dataclass(frozen=True)
class Probe:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    question: str
    duration: float  # seconds


def clip_length(config: PiteConfig) -> int:
    """Frames per clip the model reads: N, or K·F for two-stream encoding."""
    if config.visual_encoding == "two_stream":
        options = config.two_stream_config()
        return options.num_segments * options.frames_per_segment
    return int(config.num_frames)


def probes(config: PiteConfig, count: int, seed: int = PROBE_SEED, size: tuple[int, int] = (96, 128)) -> list[Probe]:
    """``count`` seeded synthetic clips: a disc moving across a plain background."""
    rng = np.random.default_rng(seed)
    height, width = size
    rows, cols = np.mgrid[:height, :width]
    frames = clip_length(config)
    result = []
    for index in range(count):
        background, colour = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        radius = rng.uniform(0.08, 0.2) * height
        start, end = rng.uniform(0.2, 0.8, 2) * (width, height), rng.uniform(0.2, 0.8, 2) * (width, height)
        clip = np.empty((frames, height, width, 3), np.uint8)
        for t, alpha in enumerate(np.linspace(0.0, 1.0, frames)):
            x, y = (1 - alpha) * start + alpha * end
            clip[t] = np.where(((cols - x) ** 2 + (rows - y) ** 2 <= radius**2)[..., None], colour, background)
        question = QUESTIONS[(index + seed * 3) % len(QUESTIONS)]
        result.append(Probe(clip, question, float(rng.uniform(2.0, 20.0))))
    return result


def no_phrases(text: str) -> list[tuple[int, int]]:
    """A ``phrase_fn`` finding nothing: parity compares tokens, not the phrase finder."""
    return []


@torch.no_grad()
def decoder_parity(
    model: PiteForConditionalGeneration,
    processor: PiteProcessor,
    backend: OrtBackend,
    batch: list[Probe],
    decode_steps: int,
) -> dict:
    """``{"max_abs_diff": {...}, "reference_max_abs": {...}, "positions": n}`` for visual tokens,
    logits, traj, hidden and projector over a left-padded batch: prefill + ``decode_steps``."""
    pixels = processor.pixel_batch([probe.frames for probe in batch])
    prompts = processor.prompt_batch([probe.question for probe in batch], [len(probe.frames) for probe in batch])
    diffs: dict[str, float] = {}
    scales: dict[str, float] = {}

    def record(name: str, ours: np.ndarray, reference: torch.Tensor, keep: np.ndarray | None = None) -> None:
        reference = reference.float().numpy()
        if keep is not None:
            ours, reference = ours[keep], reference[keep]
        diffs[name] = max(diffs.get(name, 0.0), float(np.abs(ours - reference).max()))
        scales[name] = max(scales.get(name, 0.0), float(np.abs(reference).max()))

    visual, patches = model.encode_clip(pixels["pixel_values"])
    real_frames = model.visual_mask(pixels["frame_mask"])
    encoded = backend.encode(pixels["pixel_values"].numpy())
    record("visual", encoded[0], visual, None if real_frames is None else real_frames.numpy())
    if patches is not None:
        record("patches", encoded[1], patches)
    embeds = model.merge_visual(prompts["input_ids"], visual, real_frames)
    mask, positions = prompts["attention_mask"], prompts["position_ids"]
    reference = model.decoder_step(embeds, mask, positions, DynamicCache(config=model.config.text_config))
    compared = tuple(name for name in COMPARED if name in decoder_outputs(model.config))
    ours, cache = backend.run_decoder(embeds.numpy(), mask.numpy(), positions.numpy(), None, compared)
    real = mask.numpy().astype(bool)
    counted = int(real.sum())
    for name in compared:
        record(name, ours[name], getattr(reference, name), real)
    positions = positions[:, -1:]
    for _ in range(decode_steps):
        chosen = reference.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions + 1
        embeds = model.embed_tokens(chosen)
        reference = model.decoder_step(embeds, mask, positions, reference.past_key_values)
        ours, cache = backend.run_decoder(embeds.numpy(), mask.numpy(), positions.numpy(), cache, compared)
        counted += len(batch)
        for name in compared:
            record(name, ours[name], getattr(reference, name))
    for row, hidden in enumerate(reference.hidden[:, -1]):
        clip = None if patches is None else patches[row : row + 1]
        trajectory, visibility = backend.heads(hidden.numpy(), encoded, row)
        record("projector", trajectory, model.project(hidden[None], clip)[1][0])
        if model.config.visibility_head:  # the visibility head is gated with the projector's tolerance
            record("projector", visibility, model.visibility(hidden[None])[0])
    return {"max_abs_diff": diffs, "reference_max_abs": scales, "positions": counted}


def check_parity(
    model: PiteForConditionalGeneration,
    processor: PiteProcessor,
    backend: OrtBackend,
    tolerances: Tolerances = Tolerances(),
    count: int = 3,
    decode_steps: int = 4,
    max_new_tokens: int = 16,
) -> dict:
    """The parity report of an fp32 export (``passed``, ``failures``, differences, greedy tokens)."""
    batch = probes(model.config, count)
    report = decoder_parity(model, processor, backend, batch, decode_steps)
    limits = asdict(tolerances)
    failures = [
        f"{name}: max abs diff {diff:.3g} > {limits[name] * max(1.0, report['reference_max_abs'][name]):.3g}"
        for name, diff in report["max_abs_diff"].items()
        if not diff <= limits[name] * max(1.0, report["reference_max_abs"][name])  # NaN fails too
    ]
    torch_backend = TorchBackend(model, processor)
    identical = 0
    for index, probe in enumerate(batch):
        expected, found = (
            generate(runtime, [probe.frames], [probe.question], [probe.duration], max_new_tokens=max_new_tokens,
                     phrase_fn=no_phrases)[0].token_ids
            for runtime in (torch_backend, backend)
        )
        identical += expected == found
        if expected != found:
            failures.append(f"probe {index}: greedy tokens differ: torch {expected}, onnx {found}")
    return {**report, "passed": not failures, "failures": failures, "tolerances": limits,
            "greedy_identical": f"{identical}/{len(batch)}", "probes": len(batch), "decode_steps": decode_steps,
            "max_new_tokens": max_new_tokens}


def teacher_forced(backend: GreedyBackend, probe: Probe, tokens: list[int]) -> np.ndarray:
    """Logits ``(len(tokens), vocab)`` of ``backend`` at each step when fed ``tokens[:-1]`` after the prompt."""
    step, mask, positions, _ = start(backend, [probe.frames], [probe.question])
    logits = [step.logits[0]]
    for token in tokens[:-1]:
        step, mask, positions = advance(backend, step, np.array([token]), mask, positions)
        logits.append(step.logits[0])
    return np.stack(logits)


def agreement(
    model: PiteForConditionalGeneration,
    processor: PiteProcessor,
    backend: GreedyBackend,
    count: int = 6,
    max_new_tokens: int = 16,
) -> dict:
    """Greedy-token agreement of ``backend`` with torch on held-out probes (see the module doc)."""
    torch_backend = TorchBackend(model, processor)
    eos = processor.tokenizer.eos_token_id
    matches = total = identical = 0
    logits_diff = 0.0
    batch = probes(model.config, count, HELD_OUT_SEED)
    for probe in batch:
        answer = [generate(runtime, [probe.frames], [probe.question], [probe.duration], max_new_tokens=max_new_tokens,
                           phrase_fn=no_phrases)[0].token_ids for runtime in (torch_backend, backend)]
        identical += answer[0] == answer[1]
        chosen = answer[0] + ([eos] if len(answer[0]) < max_new_tokens else [])
        reference, ours = teacher_forced(torch_backend, probe, chosen), teacher_forced(backend, probe, chosen)
        matches += int((ours.argmax(-1) == np.asarray(chosen)).sum())
        total += len(chosen)
        logits_diff = max(logits_diff, float(np.abs(ours - reference).max()))
    return {"token_agreement": matches / total, "tokens": total, "logits_max_abs_diff": logits_diff,
            "identical_answers": f"{identical}/{len(batch)}", "probes": len(batch), "max_new_tokens": max_new_tokens}
