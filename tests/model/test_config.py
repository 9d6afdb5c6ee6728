"""PiteConfig's validation: one place, every Literal field, and overrides through it."""

from __future__ import annotations

import pytest

from pite_ros.model.config import ConfigError, PiteConfig, literal_fields, load_config


def test_every_literal_field_is_checked() -> None:
    fields = literal_fields()
    assert fields["visual_encoding"] == ("pite", "two_stream") and fields["adapter_type"] == ("linear", "mlp")
    assert len(fields) == 10
    values = load_config("tiny").to_dict()
    values.pop("model_type")
    for name in fields:
        with pytest.raises(ConfigError, match=f"PiteConfig.{name} must be one of"):
            PiteConfig(**{**values, name: "nonsense"})


def test_update_checked_sets_valid_fields_and_normalises_them() -> None:
    config = load_config("tiny")
    config.update_checked({"coord_weight": 2.5, "stage_trainable": {3: ["llm"]}, "projector_type": "mlp"})
    assert (config.coord_weight, config.stage_trainable, config.projector_type) == (2.5, {"3": ["llm"]}, "mlp")


@pytest.mark.parametrize("values, message", [
    ({"trajectory_readout": "argmax"}, "trajectory_readout must be one of"),
    ({"coord_weights": 1.0}, "no field 'coord_weights'"),
    ({"num_frames": 0}, "num_frames must be positive"),
    ({"coord_weight": 3.0, "frame_patch_pool": 3}, "frame_patch_pool=3 must divide"),
])
def test_update_checked_rejects_and_changes_nothing(values, message) -> None:
    config = load_config("tiny")
    before = config.to_dict()
    with pytest.raises(ConfigError, match=message):
        config.update_checked(values)
    assert config.to_dict() == before
