"""Training configuration: one YAML (or JSON) file per stage, validated before any work starts.

Every field has a default except ``stage``, ``model``, ``output_dir`` and ``data``. An unknown
or ill-typed field stops the run at once with an error naming the file and the field, so a
typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pite_ros.model.stages import STAGE_TRAINABLE

DATA_FORMATS = ("localized_narratives", "pite143k", "conversations", "grounding", "dense_captions", "mcq")


class ConfigError(ValueError):
    """A training config is invalid: the message names the file and the field."""


@dataclass
class DataSpec:
    """One training file: its format (see docs/data-formats.md) and path (relative to the config)."""

    format: str
    path: str


@dataclass
class TrainConfig:
    """A stage's training run. ``model`` is a preset name, a config JSON, or a checkpoint dir."""

    stage: int
    model: str
    output_dir: str
    data: list[DataSpec]
    vocabulary: str | None = None  # words file for a locally built tokenizer ("synth" = the synthetic world's)
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # "no" | "bf16" | "auto" (bf16 where the device supports it)
    save_every: int = 100
    keep_checkpoints: int = 2
    num_workers: int = 0
    model_overrides: dict[str, Any] = field(default_factory=dict)  # PiteConfig fields, e.g. coord_weight, lora_r
    # This run trains only these parameter groups (pite_ros.model.stages.GROUPS), e.g. a new head on
    # frozen weights; unlike model_overrides' stage_trainable it is not saved with the model.
    train_only: list[str] | None = None
    max_examples: int | None = None  # cap per data file (quick runs)
    frame_cache_mb: int = 0  # decoded frames kept in memory across epochs (0: decode every time)
    share_clips: bool = False  # batches drawn clip by clip, a clip's examples in one row (splice_shared)
    share_clips_max_examples: int = 0  # with share_clips: at most this many of a clip's examples together (0: all)
    source: str = ""  # the file this config came from (set by the loader)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() or not self.source else Path(self.source).parent / candidate


def _check(source: str, name: str, value: Any, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{source}: field '{name}' must be {expected}, got {value!r}")


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """Validate ``raw`` field by field and build a TrainConfig."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of fields")
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    missing = [name for name in ("stage", "model", "output_dir", "data") if name not in raw]
    if missing:
        raise ConfigError(f"{source}: missing required field(s) {missing}")
    if raw["stage"] not in STAGE_TRAINABLE:
        raise ConfigError(f"{source}: field 'stage' must be one of {sorted(STAGE_TRAINABLE)}, got {raw['stage']!r}")
    data = raw["data"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: field 'data' must be a non-empty list of {{format, path}}")
    specs = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != {"format", "path"}:
            raise ConfigError(f"{source}: data[{index}] must have exactly the fields 'format' and 'path'")
        if item["format"] not in DATA_FORMATS:
            raise ConfigError(f"{source}: data[{index}].format {item['format']!r} is not one of {DATA_FORMATS}")
        if raw["stage"] == 0 and item["format"] != "localized_narratives":
            raise ConfigError(f"{source}: data[{index}].format: stage 0 reads traced words, so "
                              f"'localized_narratives' only, got {item['format']!r}")
        specs.append(DataSpec(format=item["format"], path=str(item["path"])))
    numbers = {"seed": int, "max_steps": int, "batch_size": int, "grad_accum": int, "warmup_steps": int,
               "save_every": int, "keep_checkpoints": int, "num_workers": int, "frame_cache_mb": int,
               "share_clips_max_examples": int,
               "learning_rate": (int, float), "weight_decay": (int, float), "max_grad_norm": (int, float)}
    for name, expected in numbers.items():
        if name in raw:
            _check(source, name, raw[name], expected)
    for name in ("max_steps", "batch_size", "grad_accum", "save_every", "keep_checkpoints"):
        if name in raw and raw[name] < 1:
            raise ConfigError(f"{source}: field '{name}' must be at least 1, got {raw[name]}")
    for name in ("frame_cache_mb", "share_clips_max_examples"):
        if raw.get(name, 0) < 0:
            raise ConfigError(f"{source}: field '{name}' must be >= 0, got {raw[name]}")
    if not isinstance(raw.get("share_clips", False), bool):
        raise ConfigError(f"{source}: field 'share_clips' must be true or false, got {raw['share_clips']!r}")
    if raw.get("share_clips") and raw["stage"] == 0:
        raise ConfigError(f"{source}: field 'share_clips': stage 0 scores the tower alone, it has no rows to share")
    if raw.get("share_clips_max_examples") and not raw.get("share_clips"):
        raise ConfigError(f"{source}: field 'share_clips_max_examples' needs 'share_clips: true'")
    if not isinstance(raw.get("model_overrides", {}), dict):
        raise ConfigError(f"{source}: field 'model_overrides' must be a mapping of model config fields")
    train_only = raw.get("train_only")
    if train_only is not None and (not isinstance(train_only, list) or not train_only
                                   or not all(isinstance(group, str) for group in train_only)):
        raise ConfigError(f"{source}: field 'train_only' must be a non-empty list of parameter groups")
    if raw.get("mixed_precision", "auto") not in ("no", "bf16", "auto"):
        raise ConfigError(f"{source}: field 'mixed_precision' must be 'no', 'bf16' or 'auto'")
    values = {**raw, "data": specs, "source": source}
    return TrainConfig(**values)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML/JSON config file, apply command-line ``overrides``, and validate."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from error
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from error
    raw = dict(raw or {})
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(raw, str(path))
