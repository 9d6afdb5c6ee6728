"""``export_onnx``: a checkpoint directory to an ONNX Runtime export, checked against torch.

Layout of ``OUT_DIR`` (each directory a complete export that ``OnnxEngine`` loads):

- ``vision.onnx``, ``decoder.onnx``, ``projector.onnx`` (``onnx_graphs``; float32),
  ``embeddings.npy`` (the LM's input embedding table ``(vocab, d)`` float32: text and visual
  tokens are joined before the decoder), ``config.json`` and the tokenizer's files,
  ``parity.json`` (``onnx_parity.check_parity``) and ``manifest.json`` (``onnx_manifest``);
- ``int8/`` with ``--int8``: the vision and decoder graphs quantised with
  ``onnxruntime.quantization.quantize_dynamic`` (int8 weights of every MatMul with constant
  weights, one scale per tensor; activations quantised on the fly), and ``agreement.json``;
- ``fp16/`` with ``--fp16``: the vision and decoder graphs converted by
  ``onnxruntime.transformers.float16`` (float16 weights, activations, inputs, outputs and
  KV cache; meant for GPU providers), and ``agreement.json``.
The projector graph stays float32 in every variant (a few thousand weights, run once per
phrase); unchanged files of a variant are hard links to the fp32 ones where possible.

The parity check gates the export: when it fails, ``ExportError`` says which value differed
and by how much, ``parity.json`` holds the report and no ``manifest.json`` is written, so
no engine loads the export. Variants are reported, not gated (their differences are the
price of the reduction); ``min_agreement`` turns the report into a gate.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from pite_ros.engine.base import EngineError
from pite_ros.engine.onnx_engine import OrtBackend
from pite_ros.engine.onnx_graphs import DEFAULT_OPSET, export_graphs, kv_shape
from pite_ros.engine.onnx_manifest import MANIFEST_NAME, sha256_file, write_manifest
from pite_ros.engine.onnx_parity import Tolerances, agreement, check_parity
from pite_ros.engine.onnx_providers import CPU, session_options
from pite_ros.model.checkpoint import WEIGHTS_NAME
from pite_ros.model.model_dir import load_model_and_processor
from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.processor import PiteProcessor

log = logging.getLogger(__name__)

VARIANTS = ("int8", "fp16")
REDUCED_GRAPHS = ("vision", "decoder")
AGREEMENT_GOAL = 0.95
# Attention as plain MatMul-Softmax-MatMul with an additive float mask: SDPA's export adds a
# boolean-mask Where and a NaN guard per layer. Measured on the default model (1 thread, CPU
# time): decode 0.61 -> 0.51 ms/token, the rest unchanged; ONNX Runtime's fused attention
# contrib ops (onnxscript's ort_fusions) were slower on CPU at these head sizes (vision
# 12.8 -> 15.7 ms, decode 0.55 -> 0.79 ms/token), so the graphs are left unfused.
EXPORT_ATTENTION = "eager"


class ExportError(EngineError):
    """The export cannot be made or does not match the torch model; the message says what."""


@dataclass
class ExportResult:
    """Where the export went, its reports, and how long each part took (seconds)."""

    directory: Path
    parity: dict
    variants: dict[str, Path] = field(default_factory=dict)
    agreement: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def export_onnx(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    int8: bool = False,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    tolerances: Tolerances = Tolerances(),
    probes: int = 3,
    held_out: int = 6,
    max_new_tokens: int = 16,
    min_agreement: float = 0.0,
) -> ExportResult:
    """Export ``checkpoint`` to ``out_dir`` (see the module doc); ``probes`` clips check parity
    and ``held_out`` other clips the variants' agreement, answers up to ``max_new_tokens``."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    clock = time.perf_counter()
    model, processor = load_model_and_processor(checkpoint, dtype=torch.float32)
    model.set_attn_implementation(EXPORT_ATTENTION)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a failed export must not stay loadable
    for name in VARIANTS:  # stale variants (their files may be hard links to the files rewritten now)
        shutil.rmtree(out_dir / name, ignore_errors=True)
    seconds = {"load": time.perf_counter() - clock}

    clock = time.perf_counter()
    specs = export_graphs(model, out_dir, opset)
    np.save(out_dir / "embeddings.npy", model.causal_lm().get_input_embeddings().weight.detach().numpy())
    model.config.save_pretrained(out_dir)
    saved = processor.save_pretrained(out_dir)
    tokenizer_files = sorted(path.name for path in saved if path.is_file())
    seconds["export"] = time.perf_counter() - clock
    num_layers, heads, head_dim = kv_shape(model)
    manifest = {
        "variant": "fp32",
        "model_name": checkpoint.resolve().name,
        "source": {"checkpoint": str(checkpoint.resolve()), "weights_sha256": sha256_file(checkpoint / WEIGHTS_NAME)},
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnx {onnx.__version__}",
        "attention": EXPORT_ATTENTION,
        "opset": opset,
        "config": json.loads(model.config.to_json_string()),
        "tokenizer_files": tokenizer_files,
        "graphs": {name: {"file": spec.file, "inputs": spec.inputs, "outputs": spec.outputs}
                   for name, spec in specs.items()},
        "embeddings": {"file": "embeddings.npy", "dtype": "float32",
                       "shape": [model.config.text_config.vocab_size, model.config.hidden_size]},
        "kv_cache": {"num_layers": num_layers, "num_kv_heads": heads, "head_dim": head_dim,
                     "layout": "(batch, kv_heads, past, head_dim)"},
        "variants": {},
    }

    clock = time.perf_counter()
    backend = OrtBackend(out_dir, manifest, model.config, processor.tokenizer, [CPU], session_options())
    parity = check_parity(model, processor, backend, tolerances, probes, max_new_tokens=max_new_tokens)
    seconds["parity"] = time.perf_counter() - clock
    (out_dir / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    if not parity["passed"]:
        raise ExportError(f"{out_dir}: the ONNX graphs do not match the torch model: {'; '.join(parity['failures'])} "
                          f"(full report: {out_dir / 'parity.json'}; no manifest written)")
    result = ExportResult(out_dir, parity, seconds=seconds)
    requested = [name for name, wanted in (("int8", int8), ("fp16", fp16)) if wanted]
    manifest["variants"] = {name: name for name in requested}
    write_manifest(out_dir, {**manifest, "parity": parity})
    for name in requested:
        clock = time.perf_counter()
        directory, report = _write_variant(model, processor, out_dir, manifest, name, held_out, max_new_tokens)
        result.variants[name], result.agreement[name] = directory, report
        result.seconds[name] = time.perf_counter() - clock
        if report.get("token_agreement", 1.0) < min_agreement:
            raise ExportError(f"{directory}: greedy-token agreement {report['token_agreement']:.1%} with torch is "
                              f"below the required {min_agreement:.1%} (report: {directory / 'agreement.json'})")
    return result


def _write_variant(
    model: PiteForConditionalGeneration,
    processor: PiteProcessor,
    out_dir: Path,
    manifest: dict,
    name: str,
    held_out: int,
    max_new_tokens: int,
) -> tuple[Path, dict]:
    """``out_dir/<name>``: the reduced vision and decoder graphs, links to the rest, its agreement report."""
    directory = out_dir / name
    directory.mkdir()
    convert = _CONVERTERS[name]
    reduced = {manifest["graphs"][graph]["file"] for graph in REDUCED_GRAPHS}
    for file in reduced:
        convert(out_dir / file, directory / file)
    for source in sorted(out_dir.iterdir()):
        shared = source.name not in (MANIFEST_NAME, "parity.json") and not _belongs_to(source.name, reduced)
        if source.is_file() and shared:
            _link_or_copy(source, directory / source.name)
    variant = {**manifest, "variant": name, "variants": {}, "reduction": REDUCTIONS[name]}
    try:
        backend = OrtBackend(directory, variant, model.config, processor.tokenizer, [CPU], session_options())
    except EngineError as error:  # e.g. a CPU build without some fp16 kernel: report, keep the files
        report = {"measured": False, "reason": f"cannot run on {CPU}: {error}"}
    else:
        report = {"measured": True, "providers": [CPU], **agreement(model, processor, backend, held_out, max_new_tokens)}
        if report["token_agreement"] < AGREEMENT_GOAL:
            log.warning("%s: greedy-token agreement with torch %.1f%% is below the %.0f%% goal",
                        directory, 100 * report["token_agreement"], 100 * AGREEMENT_GOAL)
    (directory / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    write_manifest(directory, {**variant, "agreement": report})
    return directory, report


# How each variant is made (recorded in its manifest; the benchmark reuses an export only when equal).
REDUCTIONS = {
    "int8": {"method": "onnxruntime.quantization.quantize_dynamic", "op_types_to_quantize": ["MatMul"],
             "per_channel": False, "weight_type": "QInt8"},
    "fp16": {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": False},
}


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the MatMuls with constant weights. Per tensor: on the
    bench-400m model it agreed with torch on 94.8% of greedy tokens against 88.5% per channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = REDUCTIONS["int8"]
    logging.disable(logging.WARNING)  # the quantizer's root-logger advice to pre-process (not needed here)
    try:
        quantize_dynamic(source, target, op_types_to_quantize=options["op_types_to_quantize"],
                         per_channel=options["per_channel"], weight_type=QuantType[options["weight_type"]],
                         use_external_data_format=_has_external_data(source))
    finally:
        logging.disable(logging.NOTSET)


def _convert_fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    large = _has_external_data(source)
    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=REDUCTIONS["fp16"]["keep_io_types"])
    onnx.save(converted, str(target), save_as_external_data=large, location=f"{target.name}.data" if large else None)


_CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"int8": _quantize_int8, "fp16": _convert_fp16}


def _has_external_data(path: Path) -> bool:
    return any(other.name.startswith(path.name + ".") for other in path.parent.iterdir())


def _belongs_to(name: str, graphs: set[str]) -> bool:
    """Whether ``name`` is one of ``graphs`` or an external-data file of one."""
    return any(name == graph or name.startswith(graph + ".") for graph in graphs)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
