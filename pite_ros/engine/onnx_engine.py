"""The ONNX Runtime engine: a ``pite-export`` directory answered by the shared greedy loop.

``OnnxEngine`` checks the export against its manifest (SHA-256 of every file), loads the
config and tokenizer saved beside the graphs, opens the three sessions on the configured
providers (``onnx_providers``) and answers with ``pite_ros.model.generation.generate``,
the same loop, phrases, trajectories and segments as the torch engine; ``OrtBackend`` is
only the runtime part: the vision graph, the embedding lookup and splice of the visual
tokens, the decoder with its KV cache, and the trajectory projector (fed the row's patch
tokens from the vision graph for a soft-argmax read-out).

The KV cache stays in the sessions' device memory between steps (I/O binding: presents of
one step are bound as the pasts of the next), so a GPU provider does not copy the cache
back to the host every token; only logits and the last hidden state come back.
Inputs are cast to each graph's declared types, so the same code runs fp32, int8 (float
I/O) and fp16 exports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from transformers import PreTrainedTokenizerBase

from pite_ros.engine.base import EngineError, TokenCallback
from pite_ros.engine.onnx_cache_names import past_names, present_names
from pite_ros.engine.onnx_manifest import read_manifest
from pite_ros.engine.onnx_providers import GPU_PROVIDERS, make_session, resolve_providers, session_options
from pite_ros.model.config import ConfigError, PiteConfig, load_config
from pite_ros.model.files import CheckpointError
from pite_ros.model.generation import Step, generate
from pite_ros.model.processor import PiteProcessor
from pite_ros.types import AnswerResult

log = logging.getLogger(__name__)

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(double)": np.float64}


class OrtBackend:
    """``GreedyBackend`` over the sessions of one export directory (already verified)."""

    def __init__(
        self,
        directory: Path,
        manifest: dict[str, Any],
        config: PiteConfig,
        tokenizer: PreTrainedTokenizerBase,
        providers: list[str],
        options: ort.SessionOptions,
    ) -> None:
        self.config, self.tokenizer = config, tokenizer
        graphs = manifest["graphs"]
        self.vision = make_session(directory / graphs["vision"]["file"], options, providers)
        self.decoder = make_session(directory / graphs["decoder"]["file"], options, providers)
        self.projector = make_session(directory / graphs["projector"]["file"], options, providers)
        self.embeddings = np.load(directory / manifest["embeddings"]["file"], mmap_mode="r", allow_pickle=False)
        cache = manifest["kv_cache"]
        self.num_layers, self.kv_heads, self.head_dim = cache["num_layers"], cache["num_kv_heads"], cache["head_dim"]
        self.past_names, self.present_names = past_names(self.num_layers), present_names(self.num_layers)
        self.types = {arg.name: _NUMPY_TYPES[arg.type] for session in (self.vision, self.decoder, self.projector)
                      for arg in session.get_inputs()}
        self.device = "cuda" if self.decoder.get_providers()[0] in GPU_PROVIDERS else "cpu"

    def encode(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.vision.run(None, {"pixel_values": pixel_values.astype(self.types["pixel_values"])})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        """``(B, L)`` ids -> ``(B, L, d)`` rows of the exported embedding table (float32 copy)."""
        return np.asarray(self.embeddings[input_ids], dtype=np.float32)

    def splice(self, visual: np.ndarray, frame_mask: np.ndarray, input_ids: np.ndarray) -> np.ndarray:
        """Token embeddings with the ``<video>`` slots filled by the real visual tokens, in order
        (``PiteForConditionalGeneration.merge_visual``; PiTe tokens are per frame, so ``frame_mask``
        marks them, while every two-stream token is real, as in ``visual_mask``)."""
        embeds = self.embed(input_ids)
        slots = input_ids == self.config.video_token_id
        if self.config.visual_encoding == "pite":
            real = np.repeat(frame_mask, self.config.tokens_per_frame, axis=1)
        else:
            real = np.ones(visual.shape[:2], bool)
        if not np.array_equal(slots.sum(1), real.sum(1)):
            raise ValueError(f"visual tokens per row {real.sum(1).tolist()} != <video> positions per row "
                             f"{slots.sum(1).tolist()}")
        embeds[slots] = visual[real]
        return embeds

    def prefill(self, visual, frame_mask, input_ids, attention_mask, position_ids) -> Step:
        embeds = self.splice(visual[0], frame_mask, input_ids)
        outputs, cache = self.run_decoder(embeds, attention_mask, position_ids, None)
        return self._step(outputs, cache)

    def decode(self, token_ids, attention_mask, position_ids, cache) -> Step:
        outputs, cache = self.run_decoder(self.embed(token_ids), attention_mask, position_ids, cache)
        return self._step(outputs, cache)

    def heads(self, hidden: np.ndarray, visual, row: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The trajectory and (with a visibility head) the visibility from ONE projector run."""
        feed = {"hidden": hidden[None].astype(self.types["hidden"])}
        if visual[1] is not None:
            feed["patch_tokens"] = visual[1][row : row + 1].astype(self.types["patch_tokens"])
        names = [output.name for output in self.projector.get_outputs()]
        outputs = {name: value[0].astype(np.float32) for name, value in zip(names, self.projector.run(names, feed))}
        return outputs["traj"], outputs["visibility"] if self.config.visibility_head else None

    def run_decoder(
        self,
        inputs_embeds: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        cache: list[ort.OrtValue] | None,
        outputs: tuple[str, ...] = ("logits", "hidden"),
    ) -> tuple[dict[str, np.ndarray], list[ort.OrtValue]]:
        """One decoder pass: ``outputs`` as float32 arrays, and the new cache (device OrtValues).
        ``cache`` None starts from an empty one (past length 0)."""
        binding = self.decoder.io_binding()
        feeds = {name: np.ascontiguousarray(value, dtype=self.types[name]) for name, value in
                 (("inputs_embeds", inputs_embeds), ("attention_mask", attention_mask), ("position_ids", position_ids))}
        for name, value in feeds.items():  # ``feeds`` keeps the arrays alive until the run
            binding.bind_cpu_input(name, value)
        if cache is None:
            empty = np.zeros((len(inputs_embeds), self.kv_heads, 0, self.head_dim), self.types[self.past_names[0]])
            cache = [ort.OrtValue.ortvalue_from_numpy(empty, self.device) for _ in self.past_names]
        for name, value in zip(self.past_names, cache, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name in (*outputs, *self.present_names):
            binding.bind_output(name, self.device)
        self.decoder.run_with_iobinding(binding)
        values = binding.get_outputs()
        arrays = {name: value.numpy().astype(np.float32, copy=False) for name, value in zip(outputs, values)}
        return arrays, list(values[len(outputs):])

    @staticmethod
    def _step(outputs: dict[str, np.ndarray], cache: list[ort.OrtValue]) -> Step:
        return Step(outputs["logits"][:, -1], outputs["hidden"][:, -1], cache)


class OnnxEngine:
    """Answers with an export written by ``pite-export`` (``pite_ros.engine.export``).

    ``providers``: ONNX Runtime providers to try in order (``onnx_providers.resolve_providers``;
    None: CUDA when available, then CPU); ``num_threads``/``inter_op_threads``: the sessions'
    intra-/inter-op threads (0: ONNX Runtime's default).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        providers: list[str] | None = None,
        num_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> None:
        directory = Path(model_dir)
        manifest = read_manifest(directory)
        config, tokenizer = load_config_and_tokenizer(directory)
        self.providers = resolve_providers(providers)
        self.backend = OrtBackend(directory, manifest, config, tokenizer, self.providers,
                                  session_options(num_threads, inter_op_threads))
        self.variant = manifest["variant"]
        self.name = manifest["model_name"] + ("" if self.variant == "fp32" else f"-{self.variant}")
        if self.variant == "fp16" and self.backend.device == "cpu":
            log.warning("%s: an fp16 export on the CPU provider runs slowly (float16 kernels are few there); "
                        "the fp32 or int8 export is the one for CPUs", directory)
        self.num_frames, self.image_size = int(config.num_frames), int(config.image_size)

    def answer(
        self,
        frames: np.ndarray,
        question: str,
        duration: float,
        *,
        max_new_tokens: int | None = None,
        on_token: TokenCallback | None = None,
    ) -> AnswerResult:
        if self.backend is None:
            raise EngineError(f"engine {self.name} is closed")
        return generate(self.backend, [frames], [question], [duration], max_new_tokens=max_new_tokens,
                        on_token=on_token)[0]

    def close(self) -> None:
        self.backend = None


def load_config_and_tokenizer(directory: Path) -> tuple[PiteConfig, PreTrainedTokenizerBase]:
    """The config and tokenizer saved in an export directory (local files only, no remote code)."""
    try:
        config = load_config(directory)
    except ConfigError as error:
        raise EngineError(f"{directory / 'config.json'}: {error}") from error
    try:
        return config, PiteProcessor.from_pretrained(directory, config).tokenizer
    except CheckpointError as error:
        raise EngineError(str(error)) from error
