"""``PiteConfig``: everything that defines a PiTe model, and ``load_config`` for presets.

A composite Hugging Face config (like ``LlavaConfig``): ``vision_config`` (a CLIP vision
tower by default), ``text_config`` (any causal LM, LLaMA by default), and the PiTe parts:
adapter, projectors, N frames, P points, M temporal bins, losses, LoRA and which parameter
groups train. Presets live in ``pite_ros/configs/<name>.json``.

Presets:
- ``tiny``: CLIP vision 2 layers × 32 wide on 32 px (patch 8), LLaMA 2 layers × 64, N=4,
  P=4, M=300; builds and runs in well under a second on a CPU (tests). Its vocabulary is
  bound from a word-level tokenizer (``bind_tokenizer``).
- ``pite-7b``: the paper's shapes. CLIP ViT-L/14 at 224 px with projected 768-d features
  (the authors' ``clip-vit-large-patch14`` and ``image_embeds``), Vicuna-7B v1.5 (LLaMA,
  hidden 4096, 32 layers, 32 heads, intermediate 11008) with 32000 + 3 (``<video>``,
  ``<grounded>``, ``<sep>``) + 301 temporal tokens. N = 100 frames and P = 3 points: the
  paper does not print them; the authors' ``pite.py`` sizes the trajectory projector
  ``Linear(hidden, 3 * 100 * 2)`` (laid out P × N × 2 there, N × P × 2 here) and their
  ``inference.py`` samples 100 frames. LoRA r = 64, α = 128 as in VTimeLLM, whose training
  code PiTe follows. About 7.05 B parameters.

Choices where the papers are silent (docs/papers.md):
- ``vision_feature="pooled"`` feeds the tower's pooled CLS (after its post-layernorm) to the
  adapter μ; ``"projected"`` feeds CLIP's projected image embedding instead, which is what
  the PiTe authors' code does (``CLIPVisionModelWithProjection.image_embeds``, 768-d for
  ViT-L/14) and what the ``pite-7b`` preset uses.
- ``text_config.tie_word_embeddings`` is forced off: the temporal-token rows of the
  embeddings and of the LM head train separately (Grounded-VideoLLM stage 3) and
  safetensors cannot store one tensor under two names.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from pite_ros.model.temporal import DEFAULT_NUM_TIME_BINS
from pite_ros.model.two_stream_config import TwoStreamConfig

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"
# CLIP's normalisation (openai/clip-vit-*): pixel values are (x / 255 - mean) / std per channel.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)



class ConfigError(ValueError):
    """A config name, file or value is not usable; the message names it."""


class PiteConfig(PreTrainedConfig):
    """Configuration of ``PiteForConditionalGeneration``.

    Fields beyond the two sub-configs:
    - ``visual_encoding``: "pite" (one CLS token per frame through μ, docs/papers.md PiTe
      "Architecture") or "two_stream" (Grounded-VideoLLM, ``pite_ros.model.two_stream``;
      ``two_stream`` holds a ``TwoStreamConfig`` dict and ``vision_config`` is then unused).
    - ``adapter_type``: "linear" (PiTe's μ) or "mlp" (Linear-GELU-Linear).
    - ``projector_type``: "linear" (the authors' code) or "mlp" (the paper's words) for the
      localization projector φ and the trajectory projector.
    - ``trajectory_readout``: "projector" (the paper: φ and the trajectory projector regress
      from the hidden state) or "soft_argmax" (they find the object among the vision
      tower's patch tokens, ``pite_ros.model.readout``; PiTe encoding only);
      ``readout_dim`` its key width, ``readout_max_offset`` its largest sub-patch offset.
    - ``frame_patch_pool``: 0 gives PiTe's one visual token per frame; k > 0 adds the frame's
      patch tokens average-pooled k × k (``(G/k)²`` more tokens per frame, through the same
      post-layernorm and adapter μ as the CLS; PiTe encoding only): a deviation for towers
      whose CLS token cannot carry what several objects look like and do.
    - ``num_frames`` N (visual tokens per clip and trajectory rows), ``num_points`` P,
      ``num_time_bins`` M (temporal tokens ``<0>..<M>``).
    - ``time_token_init``: how a new model's temporal-token rows start: "random" (like every
      other row) or "ordinal" (a sinusoidal code of the bin, ``pite_ros.model.time_embeddings``:
      the papers are silent; neighbouring bins start alike).
    - ``time_token_decoding``: which temporal token a greedy answer writes once its argmax is
      one: "argmax" (Grounded-VideoLLM's greedy decoding) or "median" (the median bin of the
      distribution over ``<0>..<M>``, ``pite_ros.model.generation.choose_tokens``): a
      deviation, because the bins are an ordered axis and the median is the boundary with the
      least expected error in seconds where the mode can sit on a far, narrow peak.
    - ``coordinate_activation``: what maps the projectors' outputs to coordinates: "sigmoid"
      (into [0, 1] like the normalised targets; this project's models) or "identity" (the raw
      Linear output, as the PiTe authors' ``pite.py``, whose imported weights were trained so;
      ``project`` then clamps to [0, 1] outside training so consumers always get frame points).
    - ``prompt_format``: "vicuna_v1" (``USER: <video>\n{question} ASSISTANT:`` after
      ``system_prompt`` when set: the authors' ``conv_templates["v1"]``) or "chat_template"
      (the LLM tokenizer's own chat template, for chat LLMs that ship one), ``pite_ros.model.prompt``.
    - ``visibility_head``: a head beside the trajectory projector that gives, for each of the
      N × P points of a phrase, the probability that it is visible in its frame (trained by a
      BCE on the stage-2 ``visibility``; PiTe has none: a deviation so that consumers know
      which points are hidden). The node marks points under 0.5 ``STATE_OCCLUDED``.
    - ``coord_weight`` λ of the L1 terms; ``label_smoothing`` of the stage-3 CE.
    - ``trajectory_loss_points``: which points of a phrase's trajectory the L1 scores:
      "visible" (those the tracker marks visible: a real tracker's hidden positions are
      guesses) or "all" (docs/papers.md PiTe L2 sums over every point j, k; right for data whose
      hidden positions are known, as ``pite-synth``'s: behind the occluder, or clipped to the
      frame's border outside it).
    - ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``: each stage's LoRA.
    - ``extra_trainable``: parameter groups (see ``pite_ros.model.stages.GROUPS``) trained in
      every stage on top of the stage table; ``stage_trainable``: ``{"1": [groups]}`` replaces
      a stage's row of the table (for small models trained from scratch).
    - ``video_token_id``, ``grounded_token_id``, ``separator_token_id``,
      ``time_token_offset`` (id of ``<0>``; ``<k>`` is ``offset + k``): bound from the
      tokenizer by ``pite_ros.model.tokenizer.bind_tokenizer``.
    - ``stage``: the last training stage set up on these weights (0: none).
    """

    model_type = "pite"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    visual_encoding: Literal["pite", "two_stream"] = "pite"
    two_stream: dict | None = None
    vision_feature: Literal["pooled", "projected"] = "pooled"
    adapter_type: Literal["linear", "mlp"] = "linear"
    projector_type: Literal["linear", "mlp"] = "linear"
    trajectory_readout: Literal["projector", "soft_argmax"] = "projector"
    readout_dim: int = 64
    readout_max_offset: float = 0.1
    frame_patch_pool: int = 0
    num_frames: int = 8
    num_points: int = 4
    num_time_bins: int = DEFAULT_NUM_TIME_BINS
    time_token_init: Literal["random", "ordinal"] = "random"
    time_token_decoding: Literal["argmax", "median"] = "argmax"
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    coordinate_activation: Literal["sigmoid", "identity"] = "sigmoid"
    visibility_head: bool = False
    prompt_format: Literal["vicuna_v1", "chat_template"] = "vicuna_v1"
    system_prompt: str = ""
    coord_weight: float = 1.0
    label_smoothing: float = 0.1
    trajectory_loss_points: Literal["visible", "all"] = "visible"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    extra_trainable: list[str] | None = None
    stage_trainable: dict[str, list[str]] | None = None
    video_token_id: int | None = None
    grounded_token_id: int | None = None
    separator_token_id: int | None = None
    time_token_offset: int | None = None
    max_new_tokens: int = 64
    stage: int = 0
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.text_config.tie_word_embeddings = False
        self.image_mean = list(self.image_mean or CLIP_MEAN)
        self.image_std = list(self.image_std or CLIP_STD)
        self.extra_trainable = list(self.extra_trainable or [])
        self.stage_trainable = {str(k): list(v) for k, v in (self.stage_trainable or {}).items()}
        for name in ("num_frames", "num_points", "num_time_bins", "lora_r", "max_new_tokens", "readout_dim"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"PiteConfig.{name} must be positive, got {getattr(self, name)}")
        for name, allowed in literal_fields().items():  # HF does not enforce the Literal annotations
            if getattr(self, name) not in allowed:
                raise ConfigError(f"PiteConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.reads_patch_tokens and self.visual_encoding != "pite":
            raise ConfigError("PiteConfig.trajectory_readout='soft_argmax' reads the PiTe vision tower's patch "
                              "tokens: it needs visual_encoding='pite'")
        if self.frame_patch_pool:
            if self.visual_encoding != "pite" or self.frame_patch_pool < 0 or \
                    self.patch_grid % self.frame_patch_pool:
                raise ConfigError(f"PiteConfig.frame_patch_pool={self.frame_patch_pool} must divide the PiTe "
                                  f"vision tower's {self.patch_grid}-patch grid (visual_encoding='pite')")
        if self.visual_encoding == "two_stream":
            if not self.two_stream:
                raise ConfigError("PiteConfig.two_stream must hold the two-stream options when visual_encoding='two_stream'")
            try:
                self.two_stream = self.two_stream_config().to_dict()
            except ValueError as error:
                raise ConfigError(f"PiteConfig.two_stream: {error}") from error

    def update_checked(self, values: dict[str, Any]) -> None:
        """Set the fields in ``values`` (e.g. training's ``model_overrides``) after validating the
        config they make as a whole, as every new config is: ConfigError naming an unknown field
        or a bad value, and then nothing is changed."""
        current = self.to_dict()
        unknown = sorted(set(values) - set(current))
        if unknown:
            raise ConfigError(f"PiteConfig has no field {unknown[0]!r}")
        current.pop("model_type", None)
        try:
            checked = PiteConfig(**{**current, **values})
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from error
        for name in values:
            setattr(self, name, getattr(checked, name))

    def two_stream_config(self) -> TwoStreamConfig:
        """The two-stream encoder's options (``visual_encoding="two_stream"``)."""
        return TwoStreamConfig.from_dict(self.two_stream)

    @property
    def image_size(self) -> int:
        """Side of the square frames the visual encoder reads, in pixels."""
        if self.visual_encoding == "two_stream":
            return int(self.two_stream_config().image_tower_config().image_size)
        return int(self.vision_config.image_size)

    @property
    def reads_patch_tokens(self) -> bool:
        """Whether φ and the trajectory head read the tower's patch tokens (soft-argmax read-out)."""
        return self.trajectory_readout == "soft_argmax"

    @property
    def patch_grid(self) -> int:
        """Patches per side of the vision tower's grid (PiTe encoding)."""
        return int(self.vision_config.image_size) // int(self.vision_config.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens per frame of the PiTe encoding: the CLS, and the pooled patches if any."""
        if not self.frame_patch_pool:
            return 1
        return 1 + (self.patch_grid // self.frame_patch_pool) ** 2

    @property
    def hidden_size(self) -> int:
        """Width d of the LLM: visual tokens, hidden states and projector inputs."""
        return int(self.text_config.hidden_size)

    def time_token_ids(self) -> list[int]:
        """Ids of ``<0>..<M>`` (needs a bound tokenizer)."""
        if self.time_token_offset is None:
            raise ConfigError("PiteConfig has no tokenizer bound (time_token_offset is None)")
        return list(range(self.time_token_offset, self.time_token_offset + self.num_time_bins + 1))


@functools.cache
def literal_fields() -> dict[str, tuple[Any, ...]]:
    """Every ``Literal``-typed field of ``PiteConfig`` and its allowed values, read from the annotations."""
    # PiteConfig's own annotations only: the base class's name types (torch) this module does not import.
    own = type("PiteConfigFields", (), {"__annotations__": dict(PiteConfig.__annotations__), "__module__": __name__})
    hints = get_type_hints(own)
    return {name: get_args(hint) for name, hint in hints.items() if get_origin(hint) is Literal}


def preset_names() -> list[str]:
    """Names of the shipped presets (``pite_ros/configs/*.json``)."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> PiteConfig:
    """A preset by name (``tiny``, ``pite-7b``), a config JSON file, or a checkpoint directory."""
    text = str(name_or_path)
    if text in preset_names():
        path = PRESETS_DIR / f"{text}.json"
    else:
        path = Path(name_or_path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: neither a preset ({', '.join(preset_names())}) nor a config file")
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from error
    if not isinstance(values, dict) or values.get("model_type", "pite") != "pite":
        raise ConfigError(f"{path}: not a PiTe config (model_type must be 'pite')")
    values.pop("model_type", None)
    try:
        return PiteConfig(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from error


# So that AutoConfig/AutoTokenizer can read a PiTe checkpoint's config.json.
AutoConfig.register(PiteConfig.model_type, PiteConfig)
