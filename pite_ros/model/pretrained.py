"""A PiTe model from pretrained parts: a CLIP vision tower and a LLaMA-family causal LM.

What the papers start from (PiTe: CLIP ViT-L/14 and Vicuna-7B v1.5): ``init_from_pretrained``
loads the tower and the LLM from local ``save_pretrained`` folders or Hub ids, takes their
configs as the sub-configs and the tower's image processor's mean and std as the
preprocessing, extends the LLM's own tokenizer with the PiTe tokens and ``<0>..<M>`` (new
embedding and LM-head rows the mean of the pretrained ones, as Grounded-VideoLLM, or ordinal
when ``time_token_init`` says so), and fills the PiTe parts (N, P, adapter μ, projectors,
LoRA, losses) from a preset. The adapter and the projectors start newly initialised; the
result is a stage-0 checkpoint that ``pite-train --stage 1`` starts from (the tower frozen
in every stage, as PiTe freezes CLIP).

Memory: both parts load in the dtype asked (``from_pretrained(dtype=...)``), the PiTe model
is assembled around them on the meta device, so a 7B never exists as a second fp32 copy.
Nothing here trusts remote code; a Hub id is fetched where the network allows, and from
the local Hub cache alone where ``HF_HUB_OFFLINE`` is set (``pite_ros.hub``). Every failure is an ``InitError`` naming the source.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from pite_ros.hub import weights_source, where
from pite_ros.model.config import PRESETS_DIR, ConfigError, PiteConfig, load_config
from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.processor import PiteProcessor
from pite_ros.model.prompt import VICUNA_SYSTEM_PROMPT
from pite_ros.model.time_embeddings import fit_embeddings, init_time_token_rows
from pite_ros.model.tokenizer import bind_tokenizer, extend_tokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Fields of a preset that describe the parts loaded here, or that the tokenizer binds: not taken from it.
_NOT_FROM_PRESET = {"model_type", "vision_config", "text_config", "video_token_id", "grounded_token_id",
                    "separator_token_id", "time_token_offset", "stage", "image_mean", "image_std"}


class InitError(ConfigError):
    """A pretrained part cannot be used; the message names the option and the folder or Hub id."""


@dataclass
class Parts:
    """What the pretrained sources give: the configs (and, unless ``dry_run``, the modules)."""

    vision_config: PretrainedConfig
    text_config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase
    image_mean: list[float] | None
    image_std: list[float] | None
    tower: PreTrainedModel | None = None
    language_model: PreTrainedModel | None = None


def parse_dtype(name: str) -> torch.dtype:
    """``float32``/``bfloat16``/``float16`` (or ``fp32``/``bf16``/``fp16``) as a torch dtype."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise InitError(f"dtype {name!r}: expected one of {sorted(DTYPES)}") from None


def resolve_source(source: str, option: str) -> tuple[str, bool]:
    """``(what to pass to from_pretrained, local_files_only)`` for a folder or a Hub id
    (``pite_ros.hub.weights_source``); a folder must hold a ``config.json``."""
    try:
        resolved, local = weights_source(source)
    except FileNotFoundError as error:
        raise InitError(f"{option} {error}") from None
    if Path(resolved).is_dir() and not (Path(resolved) / "config.json").is_file():
        raise InitError(f"{option} {source}: no config.json there (not a save_pretrained folder)")
    return resolved, local


def _load(option: str, source: str, loader, *args, local_files_only: bool, **kwargs):
    """``loader(*args, **kwargs)``; any failure becomes an InitError naming ``option`` and ``source``."""
    try:
        return loader(*args, trust_remote_code=False, local_files_only=local_files_only, **kwargs)
    except InitError:
        raise
    except Exception as error:  # OSError, ValueError, HF's own errors: all mean "cannot be had"
        raise InitError(f"{option} {where(source, local_files_only)}: cannot be loaded: "
                        f"{str(error).splitlines()[0]}") from error


def vision_config_of(config: PretrainedConfig, option: str, source: str) -> PretrainedConfig:
    """The CLIP vision config of a ``clip`` (whole CLIP) or ``clip_vision_model`` config."""
    if config.model_type == "clip":
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        return vision
    if config.model_type == "clip_vision_model":
        return config
    raise InitError(f"{option} {source}: a {config.model_type!r} model, not a CLIP vision model "
                    "(expected model_type 'clip' or 'clip_vision_model')")


def load_parts(vision: str, llm: str, *, feature: str, dtype: torch.dtype, dry_run: bool = False,
               options: tuple[str, str] = ("--vision", "--llm")) -> Parts:
    """Configs, tokenizer and preprocessing of ``vision`` and ``llm``, and (unless ``dry_run``) the
    tower (``CLIPVisionModelWithProjection`` for ``feature="projected"``) and the causal LM in
    ``dtype``; errors name the command-line ``options`` the two came from."""
    vision_option, llm_option = options
    vision_source, vision_local = resolve_source(vision, vision_option)
    llm_source, llm_local = resolve_source(llm, llm_option)
    vision_config = vision_config_of(
        _load(vision_option, vision, AutoConfig.from_pretrained, vision_source, local_files_only=vision_local),
        vision_option, vision)
    text_config = _load(llm_option, llm, AutoConfig.from_pretrained, llm_source, local_files_only=llm_local)
    if text_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InitError(f"{llm_option} {llm}: a {text_config.model_type!r} model, not a causal language model")
    tokenizer = _load(llm_option, llm, AutoTokenizer.from_pretrained, llm_source, local_files_only=llm_local)
    if tokenizer.eos_token_id is None:
        raise InitError(f"{llm_option} {llm}: its tokenizer has no EOS token, so an answer could not end")
    mean, std = _normalisation(vision_source, vision_local, f"{vision_option} {vision}")
    parts = Parts(vision_config, text_config, tokenizer, mean, std)
    if dry_run:
        return parts
    tower_class = CLIPVisionModelWithProjection if feature == "projected" else CLIPVisionModel
    tower, info = _load(vision_option, vision, tower_class.from_pretrained, vision_source, dtype=dtype,
                        local_files_only=vision_local, output_loading_info=True)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        hint = " (a CLIPVisionModel folder has no projection: use --vision-feature pooled)" \
            if any("visual_projection" in key for key in missing) else ""
        raise InitError(f"{vision_option} {vision}: lacks the weights {missing[:3]}{hint}")
    parts.tower, parts.vision_config = tower, tower.config
    parts.language_model, info = _load(llm_option, llm, AutoModelForCausalLM.from_pretrained, llm_source, dtype=dtype,
                                       local_files_only=llm_local, output_loading_info=True)
    if info["missing_keys"]:
        raise InitError(f"{llm_option} {llm}: lacks the weights {sorted(info['missing_keys'])[:3]}")
    parts.text_config = parts.language_model.config
    return parts


def _normalisation(source: str, local: bool, named: str) -> tuple[list[float] | None, list[float] | None]:
    """The tower's image processor's mean and std (None, with a warning, when it has none: CLIP's are used)."""
    try:
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local, trust_remote_code=False)
    except Exception as error:  # no preprocessor_config.json, or an unreadable one
        log.warning("%s: no image processor (%s); using CLIP's mean and std", named,
                    str(error).splitlines()[0])
        return None, None
    return [float(v) for v in processor.image_mean], [float(v) for v in processor.image_std]


def preset_parts(preset: str) -> dict:
    """The PiTe parts of a preset (or config JSON): everything but the sub-configs and bound ids."""
    path = PRESETS_DIR / f"{preset}.json" if (PRESETS_DIR / f"{preset}.json").is_file() else Path(preset)
    load_config(preset)  # validates, and names the preset or file when it is not usable
    values = json.loads(path.read_text()) if path.is_file() else json.loads((path / "config.json").read_text())
    if values.get("visual_encoding", "pite") != "pite":
        raise InitError(f"--preset {preset}: the two-stream encoding is not built from one CLIP tower; "
                        "use a PiTe preset (pite-7b, tiny, ...)")
    return {key: value for key, value in values.items() if key not in _NOT_FROM_PRESET}


def build_config(parts: Parts, preset: str, values: dict, *, prompt_format: str,
                 system_prompt: str | None) -> PiteConfig:
    """The PiteConfig: sub-configs from ``parts``, the rest from ``values`` (``preset``'s PiTe
    parts, ``preset_parts``; named in errors) and the options."""
    values = dict(values)
    if prompt_format == "auto":
        prompt_format = "chat_template" if getattr(parts.tokenizer, "chat_template", None) else "vicuna_v1"
    if prompt_format == "chat_template" and not getattr(parts.tokenizer, "chat_template", None):
        raise InitError("--prompt-format chat_template: the --llm tokenizer has no chat template")
    values["prompt_format"] = prompt_format
    values["system_prompt"] = system_prompt if system_prompt is not None else (
        VICUNA_SYSTEM_PROMPT if prompt_format == "vicuna_v1" else "")
    text = parts.text_config.to_dict()
    text["vocab_size"] = max(int(parts.text_config.vocab_size), len(parts.tokenizer))
    try:
        config = PiteConfig(vision_config=parts.vision_config.to_dict(), text_config=text,
                            image_mean=parts.image_mean, image_std=parts.image_std, **values)
        bind_tokenizer(config, parts.tokenizer)
    except (TypeError, ValueError) as error:
        raise InitError(f"--preset {preset}: {error}") from error
    config.text_config.vocab_size = text["vocab_size"]  # bind sets len(tokenizer); a padded LM keeps its rows
    config.text_config.eos_token_id = _end_ids(parts)
    config.stage = 0
    return config


def _end_ids(parts: Parts) -> int | list[int]:
    """The tokenizer's EOS and every end id of the LLM's config (generation stops at any of them)."""
    found = parts.text_config.eos_token_id
    ids = [parts.tokenizer.eos_token_id, *([] if found is None else [found] if isinstance(found, int) else found)]
    ids = list(dict.fromkeys(int(i) for i in ids))
    return ids[0] if len(ids) == 1 else ids


def init_from_pretrained(
    vision: str,
    llm: str,
    *,
    preset: str = "pite-7b",
    dtype: torch.dtype = torch.bfloat16,
    feature: str | None = None,
    prompt_format: str = "auto",
    system_prompt: str | None = None,
    dry_run: bool = False,
    options: tuple[str, str] = ("--vision", "--llm"),
) -> tuple[PiteForConditionalGeneration, PiteProcessor] | PiteConfig:
    """The PiTe model with ``vision``'s tower and ``llm``'s weights, and its processor (the LLM's
    tokenizer with the PiTe tokens); with ``dry_run`` only the config (nothing but configs and
    the tokenizer is read)."""
    values = preset_parts(preset)
    values["vision_feature"] = feature = feature or values.get("vision_feature", "pooled")
    parts = load_parts(vision, llm, feature=feature, dtype=dtype, dry_run=dry_run, options=options)
    new_ids = extend_tokenizer(parts.tokenizer, int(values.get("num_time_bins", PiteConfig.num_time_bins)))
    config = build_config(parts, preset, values, prompt_format=prompt_format, system_prompt=system_prompt)
    if dry_run:
        return config
    fit_embeddings(parts.language_model, new_ids, config.text_config.vocab_size)
    with init_empty_weights():
        model = PiteForConditionalGeneration(config)
    model.visual_encoder.vision_tower, model.language_model = parts.tower, parts.language_model
    _materialise_pite_heads(model, dtype)
    if config.time_token_init == "ordinal":
        init_time_token_rows(model.causal_lm(), config.time_token_ids())
    model.requires_grad_(False)
    return model.eval(), PiteProcessor(parts.tokenizer, config)


def _materialise_pite_heads(model: PiteForConditionalGeneration, dtype: torch.dtype) -> None:
    """The PiTe parts the model built on the meta device (adapter μ, the projectors, a visibility
    head) made real and newly initialised (HF's normal(0, initializer_range)), in ``dtype``."""
    if model.config.reads_patch_tokens:
        raise InitError("trajectory_readout 'soft_argmax' is not supported by init: use a projector preset")
    heads = [module for name, module in model.named_children() if name not in ("visual_encoder", "language_model")]
    for module in (model.visual_encoder.adapter, *heads):
        module.to_empty(device="cpu")
        module.apply(model._init_weights)
        module.to(dtype)
