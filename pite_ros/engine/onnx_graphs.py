"""The three ONNX graphs of an export, as torch modules with flat tensor inputs and outputs.

- ``vision``: ``pixel_values (B, T, 3, S, S) -> visual_embeds (B, V, d)``: ``encode_clip``
  (vision tower + adapter μ), and ``patch_tokens (B, T, G², D_v)`` for a soft-argmax
  read-out. B and T are dynamic; two-stream encoding needs exactly K·F frames, so there T
  is fixed.
- ``decoder``: the LM, its head and the trajectory projector with a KV cache:
  ``inputs_embeds (B, L, d)``, ``attention_mask (B, P + L)`` int64, ``position_ids (B, L)``
  int64, ``past_key_values.{i}.key|value (B, H, P, D)`` -> ``logits (B, L, vocab)``,
  ``traj (B, L, N, P, 2)`` (not with a soft-argmax read-out: it needs the patches, and
  answers read pooled phrase states only), ``hidden (B, L, d)``,
  ``present.{i}.key|value (B, H, P + L, D)``.
  The first pass (prefill) feeds past tensors with P = 0. ``hidden`` is there because a
  phrase's trajectory is the projector applied to the MEAN hidden state of its tokens
  (``pite_ros.model.generation``): averaging the per-token ``traj`` outputs would not be the
  same (the sigmoid, and the GELU of an ``mlp`` projector, are not linear).
- ``projector``: ``hidden (B, d) -> traj (B, N, P, 2)``: ``project``'s trajectory half, run
  on pooled phrase states; a soft-argmax read-out also takes ``patch_tokens (B, T, G², D_v)``.
  A graph of its own (not NumPy with exported weights) so both projector types (linear,
  Linear-GELU-Linear) run the model's own operators.

Exported with ``torch.onnx.export(dynamo=True)`` and ``torch.export.Dim.DYNAMIC`` axes
(docs/environment.md: named Dims with arithmetic fail). Example sizes avoid 0 and 1, which
``torch.export`` would specialise. Checkpoints store merged LoRA weights, so the graphs hold
plain Linear layers.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from pite_ros.engine.onnx_cache_names import past_names, present_names
from pite_ros.model.config import PiteConfig
from pite_ros.model.modeling import PiteForConditionalGeneration

DEFAULT_OPSET = 18

VISION_INPUTS = ["pixel_values"]
def projector_outputs(config: PiteConfig) -> list[str]:
    """The projector graph's outputs: the trajectory, and the points' visibility with a visibility head."""
    return ["traj", "visibility"] if config.visibility_head else ["traj"]


def vision_outputs(config: PiteConfig) -> list[str]:
    """The vision graph's outputs: the visual tokens, and the patch tokens when read."""
    return ["visual_embeds", "patch_tokens"] if config.reads_patch_tokens else ["visual_embeds"]


def decoder_outputs(config: PiteConfig) -> list[str]:
    """The decoder graph's outputs before the cache: ``traj`` only for the projector read-out."""
    return ["logits", "hidden"] if config.reads_patch_tokens else ["logits", "traj", "hidden"]


def projector_inputs(config: PiteConfig) -> list[str]:
    """The projector graph's inputs: a hidden state, and the clip's patch tokens when read."""
    return ["hidden", "patch_tokens"] if config.reads_patch_tokens else ["hidden"]


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its file and its input and output names (as in the manifest)."""

    file: str
    inputs: list[str]
    outputs: list[str]


class VisionGraph(nn.Module):
    """``encode_clip``: ``(B, T, 3, S, S)`` -> ``(B, V, d)`` [and ``(B, T, G², D_v)``]."""

    def __init__(self, model: PiteForConditionalGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        visual, patches = self.model.encode_clip(pixel_values)
        return (visual,) if patches is None else (visual, patches)


class DecoderGraph(nn.Module):
    """``decoder_step`` with the cache as flat tensors (a ``DynamicCache`` rebuilt inside)."""

    def __init__(self, model: PiteForConditionalGeneration) -> None:
        super().__init__()
        self.model = model
        self.num_layers = int(model.config.text_config.num_hidden_layers)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache(config=self.model.config.text_config)
        for layer in range(self.num_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        step = self.model.decoder_step(inputs_embeds, attention_mask, position_ids, cache)
        present = [tensor for layer in step.past_key_values.layers for tensor in (layer.keys, layer.values)]
        heads = (step.logits, step.hidden) if step.traj is None else (step.logits, step.traj, step.hidden)
        return (*heads, *present)


class ProjectorGraph(nn.Module):
    """The trajectory head: ``(B, d)`` [and ``(B, T, G², D_v)``] -> ``(B, N, P, 2)`` in [0, 1]
    [and, with a visibility head, ``(B, N, P)`` probabilities]."""

    def __init__(self, model: PiteForConditionalGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor, *patch_tokens: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        traj = self.model.project(hidden, *patch_tokens)[1]
        visibility = self.model.visibility(hidden)
        return traj if visibility is None else (traj, visibility)


def kv_shape(model: PiteForConditionalGeneration) -> tuple[int, int, int]:
    """``(num_layers, kv_heads, head_dim)`` of the decoder's cache, read from one real step."""
    text = model.config.text_config
    with torch.no_grad():
        step = model.decoder_step(torch.zeros(1, 1, model.config.hidden_size), torch.ones(1, 1, dtype=torch.long))
    keys = step.past_key_values.layers[0].keys
    return int(text.num_hidden_layers), int(keys.shape[1]), int(keys.shape[3])


def export_graphs(
    model: PiteForConditionalGeneration, directory: Path, opset: int = DEFAULT_OPSET
) -> dict[str, GraphSpec]:
    """Write ``vision.onnx``, ``decoder.onnx`` and ``projector.onnx`` for a float32 ``model`` into ``directory``."""
    if model.dtype != torch.float32:
        raise ValueError(f"export a float32 model (got {model.dtype}); variants are made from the float32 graphs")
    # quiet the exporter's "torchvision is not installed" warnings
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    model.eval()
    config = model.config
    dynamic = torch.export.Dim.DYNAMIC
    size, hidden = config.image_size, config.hidden_size
    if config.visual_encoding == "two_stream":
        options = config.two_stream_config()
        frames, frame_axes = options.num_segments * options.frames_per_segment, {0: dynamic}
    else:
        frames, frame_axes = 3, {0: dynamic, 1: dynamic}
    specs = {"vision": GraphSpec("vision.onnx", VISION_INPUTS, vision_outputs(config))}
    _export(VisionGraph(model), (torch.randn(2, frames, 3, size, size),), directory / "vision.onnx", specs["vision"],
            {"pixel_values": frame_axes}, opset)

    num_layers, heads, head_dim = kv_shape(model)
    batch, new, past = 2, 3, 4
    example = (
        torch.randn(batch, new, hidden),
        torch.ones(batch, past + new, dtype=torch.long),
        torch.arange(past, past + new).repeat(batch, 1),
        *[torch.randn(batch, heads, past, head_dim) for _ in range(2 * num_layers)],
    )
    axes = {0: dynamic, 1: dynamic}
    inputs = ["inputs_embeds", "attention_mask", "position_ids", *past_names(num_layers)]
    specs["decoder"] = GraphSpec("decoder.onnx", inputs, [*decoder_outputs(config), *present_names(num_layers)])
    _export(DecoderGraph(model), example, directory / "decoder.onnx", specs["decoder"],
            {"inputs_embeds": axes, "attention_mask": axes, "position_ids": axes,
             "past": tuple({0: dynamic, 2: dynamic} for _ in range(2 * num_layers))}, opset)

    specs["projector"] = GraphSpec("projector.onnx", projector_inputs(config), projector_outputs(config))
    example, axes = (torch.randn(2, hidden),), {"hidden": {0: dynamic}}
    if config.reads_patch_tokens:
        patches = (config.patch_grid**2, int(config.vision_config.hidden_size))
        example, axes = (*example, torch.randn(2, 3, *patches)), {**axes, "patch_tokens": ({0: dynamic, 1: dynamic},)}
    _export(ProjectorGraph(model), example, directory / "projector.onnx", specs["projector"], axes, opset)
    return specs


# Above this many bytes of weights a graph keeps them in an external file (protobuf's limit is 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30


def _export(module: nn.Module, args: tuple, path: Path, spec: GraphSpec, dynamic_shapes: dict, opset: int) -> None:
    """One graph to ``path``; weights go to an external data file ``<name>.onnx.data`` beside it
    when the module's weights pass ``EXTERNAL_DATA_BYTES`` (protobuf cannot hold a graph over
    2 GiB: a 7B decoder is about 27 GB in fp32); the manifest hashes that file with the rest."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch.export's own
        program = torch.onnx.export(module, args, input_names=spec.inputs, output_names=spec.outputs,
                                    dynamic_shapes=dynamic_shapes, dynamo=True, opset_version=opset, verbose=False)
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    weights = sum(parameter.numel() * parameter.element_size() for parameter in module.parameters())
    program.save(path, external_data=weights > EXTERNAL_DATA_BYTES)
