"""Choosing and loading an engine by name: what the node's ``engine`` parameter selects."""

from __future__ import annotations

from pathlib import Path

from pite_ros.engine.base import Engine, EngineError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"


def default_model_dir() -> Path:
    """The shipped default model (see MODEL_CARD.md there), or EngineError when it is absent."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise EngineError(
            f"no default model at {DEFAULT_MODEL_DIR}: run `make default-model` or set model_path"
        )
    return DEFAULT_MODEL_DIR


def load_engine(
    kind: str,
    path: str | Path | None = None,
    *,
    providers: str = "",
    num_threads: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
) -> Engine:
    """``kind`` "torch" (a checkpoint dir, on ``device`` in ``dtype``) or "onnx" (a ``pite-export``
    dir on ``providers``; its variant folder, e.g. ``fp16/``, sets the dtype); None = the default model."""
    model_dir = Path(path) if path else default_model_dir()
    if not model_dir.exists():
        raise EngineError(f"model_path {model_dir} does not exist")
    if kind == "torch":
        from pite_ros.engine.torch_engine import TorchEngine

        return TorchEngine(model_dir, device=device, dtype=dtype, num_threads=num_threads)
    if kind == "onnx":
        from pite_ros.engine.onnx_engine import OnnxEngine

        names = [name.strip() for name in providers.split(",") if name.strip()]
        return OnnxEngine(model_dir, providers=names or None, num_threads=num_threads)
    raise EngineError(f"unknown engine {kind!r}: expected 'torch' or 'onnx'")
