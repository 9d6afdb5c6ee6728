"""ONNX Runtime execution providers and session options, chosen by configuration.

Providers are asked for by name (``CUDAExecutionProvider`` or the short ``cuda``,
``tensorrt``/``trt``, ``cpu``, or any other ONNX Runtime provider name). Those this build
of ONNX Runtime offers (``get_available_providers``) are kept in the order asked; each one
missing is logged as a warning, and the CPU provider always ends the list so a session can
always be made. Nothing asked: CUDA when available, then CPU. The list is always passed
explicitly (docs/environment.md: ONNX Runtime also lists an Azure provider, which must not be
picked up by default). Names ONNX Runtime does not know at all are configuration errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from pite_ros.engine.base import EngineError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ALIASES = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
DEFAULT_PROVIDERS = (CUDA, CPU)
# Providers whose sessions keep tensors in GPU memory (the KV cache is bound there).
GPU_PROVIDERS = (CUDA, TENSORRT)


def provider_name(name: str) -> str:
    """The full ONNX Runtime name of ``name`` (an alias or a full name)."""
    full = ALIASES.get(name.strip().lower(), name.strip())
    if full not in ort.get_all_providers():
        raise EngineError(f"unknown ONNX Runtime provider {name!r}: use cpu, cuda, tensorrt or one of "
                          f"{ort.get_all_providers()}")
    return full


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str] | None = None) -> list[str]:
    """The providers to pass to a session: ``requested`` (default ``DEFAULT_PROVIDERS``) that are
    ``available`` (default: this ONNX Runtime's), CPU last; missing requested ones are logged."""
    available = list(ort.get_available_providers() if available is None else available)
    explicit = bool(requested)
    wanted = [provider_name(name) for name in requested] if explicit else list(DEFAULT_PROVIDERS)
    chosen = [name for index, name in enumerate(wanted)
              if name in available and name != CPU and name not in wanted[:index]]
    chosen.append(CPU)
    missing = [name for name in wanted if name not in available]
    if explicit and missing:
        log.warning("ONNX Runtime provider(s) %s not available here (available: %s); using %s",
                    ", ".join(missing), ", ".join(available), ", ".join(chosen))
    return chosen


def session_options(num_threads: int = 0, inter_op_threads: int = 0) -> ort.SessionOptions:
    """Full graph optimisation; ``num_threads`` intra-op and ``inter_op_threads`` inter-op
    threads (0: ONNX Runtime's default, one per physical core for intra-op), which sleep when
    idle instead of spinning: on a robot the runtime shares the cores with the camera driver
    and ROS, and a spinning worker holds a core the next kernel's other thread is waiting for
    (``pite-bench engine`` on a shared 2-core CPU: the default model's vision graph took 47 ms
    with spinning and 15 ms without, at 2 threads; docs/export-and-runtime.md)."""
    if num_threads < 0 or inter_op_threads < 0:
        raise EngineError(f"thread counts must be >= 0, got num_threads={num_threads}, "
                          f"inter_op_threads={inter_op_threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def make_session(path: Path, options: ort.SessionOptions, providers: Sequence[str]) -> ort.InferenceSession:
    """A session on ``path``; a provider that fails to start (e.g. CUDA libraries missing) is
    logged, as ONNX Runtime then runs the graph on the next provider."""
    try:
        session = ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise EngineError(f"{path}: ONNX Runtime cannot load the graph: {error}") from error
    dropped = [name for name in providers if name not in session.get_providers()]
    if dropped:
        log.warning("%s: provider(s) %s could not start; running on %s", path.name, ", ".join(dropped),
                    ", ".join(session.get_providers()))
    return session
