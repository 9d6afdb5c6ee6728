"""The node's parameters: declared up front with descriptors, ranges and validation.

Read-only parameters need a restart (model, engine, topic, QoS, queue size); the others
change while the node runs (prompt, rate, thresholds, debug output, the enable switch).
One table, so the YAML file, the descriptors and the validation never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Spec:
    default: object
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


SPECS: dict[str, Spec] = {
    "autostart": Spec(True, "configure and activate at start, without a lifecycle manager", read_only=True),
    "model_path": Spec("", "checkpoint or exported-model dir; empty = the shipped default model", read_only=True),
    "engine": Spec("torch", "inference engine", read_only=True, choices=("torch", "onnx")),
    "onnx_providers": Spec("CPUExecutionProvider", "comma-separated ONNX Runtime providers, in order of preference", read_only=True),
    "device": Spec("cpu", "torch engine: cpu, cuda or cuda:N (checked when the model loads)", read_only=True),
    "dtype": Spec("float32", "torch engine: weights' and activations' type (float16 on cuda only; auto = as saved)",
                  read_only=True, choices=("float32", "bfloat16", "float16", "auto")),
    "num_threads": Spec(0, "intra-op threads of the engine (0 = the engine's default)", read_only=True, range=(0, 256)),
    "image_topic": Spec("/camera/image_raw", "input camera topic (sensor_msgs/Image)", read_only=True),
    "compressed": Spec(False, "subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage) instead", read_only=True),
    "image_qos": Spec("sensor_data", "QoS of the camera subscription", read_only=True,
                      choices=("sensor_data", "reliable", "best_effort")),
    # 10 (not sensor-data's 5): a third of a second at 30 Hz, so frames that arrive while the model
    # holds the GIL are kept (pite-bench node: 2-3 of ~610 dropped at depth 5, none at 10).
    "qos_depth": Spec(10, "history depth of the camera subscription", read_only=True, range=(1, 100)),
    "clip_seconds": Spec(4.0, "length of the clip the model sees (latest seconds)", range=(0.1, 120.0)),
    "buffer_seconds": Spec(30.0, "seconds of images kept for queries with a past clip window", read_only=True, range=(1.0, 600.0)),
    "max_buffer_frames": Spec(300, "most images kept in the clip buffer", read_only=True, range=(2, 10000)),
    "max_image_side": Spec(320, "buffered images are downscaled to this longest side (model inputs are small); each also "
                                "keeps a copy at the model's input size, made on arrival so an answer does not resize",
                           read_only=True, range=(16, 4096)),
    "max_image_pixels": Spec(40_000_000, "larger images are refused as malformed", read_only=True, range=(1, 1 << 31)),
    "enabled": Spec(True, "switch inference on or off without a lifecycle transition"),
    "continuous": Spec(True, "answer the default prompt at rate_hz and publish the result"),
    "rate_hz": Spec(1.0, "continuous-mode rate", range=(0.01, 30.0)),
    "prompt": Spec("Describe the video.", "default prompt of continuous mode"),
    "max_new_tokens": Spec(48, "longest answer in tokens", range=(1, 1024)),
    "score_threshold": Spec(0.0, "tracks scoring below this are not published", range=(0.0, 1.0)),
    "stale_seconds": Spec(2.0, "a continuous-mode clip that waited longer than this for the model is dropped (0 = never)",
                          range=(0.0, 600.0)),
    "queue_size": Spec(4, "questions that may wait; more are rejected with a message", read_only=True, range=(1, 1000)),
    "max_question_chars": Spec(500, "longer questions are rejected", range=(1, 100000)),
    "debug_image": Spec(True, "publish pite/debug_image with trajectories drawn (only while subscribed)"),
    "diagnostics_period": Spec(1.0, "seconds between /diagnostics messages", read_only=True, range=(0.1, 60.0)),
    "diagnostics_error_window": Spec(10.0, "/diagnostics stays WARN this many seconds after the last refused image, "
                                     "QoS event or failed answer, then returns to OK", range=(0.1, 3600.0)),
}


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=name, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
        else:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return descriptor


def declare_parameters(node: Node) -> None:
    """Declare every parameter of SPECS on ``node`` and validate later changes."""
    for name, spec in SPECS.items():
        node.declare_parameter(name, spec.default, _descriptor(name, spec))
    node.add_on_set_parameters_callback(lambda params: validate(params))


def validate(params: list[Parameter]) -> SetParametersResult:
    """Refuse unknown choices and empty prompts (ranges are enforced by the descriptors)."""
    for param in params:
        spec = SPECS.get(param.name)
        if spec is None:
            continue
        if spec.choices and param.value not in spec.choices:
            return SetParametersResult(successful=False, reason=f"{param.name} must be one of {spec.choices}")
        if param.name == "prompt" and not str(param.value).strip():
            return SetParametersResult(successful=False, reason="prompt must not be empty")
    return SetParametersResult(successful=True)


def read(node: Node) -> dict[str, object]:
    """The current value of every parameter."""
    return {name: node.get_parameter(name).value for name in SPECS}


def parameter_table() -> str:
    """The Markdown table of every parameter (docs/node.md holds it; a test keeps the two equal)."""
    rows = ["| parameter | default | values | changes while running | what |", "|---|---|---|---|---|"]
    for name, spec in SPECS.items():
        if spec.choices:
            values = " \\| ".join(spec.choices)
        elif spec.range is not None:
            values = f"{spec.range[0]:g} to {spec.range[1]:g}"
        else:
            values = type(spec.default).__name__
        default = "`\"\"`" if spec.default == "" else f"`{str(spec.default).lower() if isinstance(spec.default, bool) else spec.default}`"
        rows.append(f"| `{name}` | {default} | {values} | {'no (restart)' if spec.read_only else 'yes'} | {spec.description} |")
    return "\n".join(rows)

