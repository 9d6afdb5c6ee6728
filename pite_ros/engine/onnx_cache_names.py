"""Names of the decoder graph's KV-cache inputs and outputs, shared by the export (which names
them) and the ONNX engine (which binds them); torch-free, so the engine imports it without torch."""

from __future__ import annotations


def past_names(num_layers: int) -> list[str]:
    """``past_key_values.{i}.key``, ``past_key_values.{i}.value`` for every layer, in order."""
    return [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def present_names(num_layers: int) -> list[str]:
    """``present.{i}.key``, ``present.{i}.value`` for every layer, in order."""
    return [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
