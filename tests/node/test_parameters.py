"""The parameter file, the declared parameters and the launch files agree."""

from __future__ import annotations

import py_compile
from pathlib import Path

import yaml

from pite_ros.node.parameters import SPECS

ROOT = Path(__file__).resolve().parents[2]


def test_config_file_lists_every_declared_parameter_with_its_default() -> None:
    values = yaml.safe_load((ROOT / "config" / "pite.yaml").read_text())["pite_node"]["ros__parameters"]
    assert set(values) == set(SPECS)
    for name, spec in SPECS.items():
        assert values[name] == spec.default, name
        assert type(values[name]) is type(spec.default), name  # ROS refuses a changed parameter type


def test_launch_files_compile() -> None:
    for path in (ROOT / "launch").glob("*.launch.py"):
        py_compile.compile(str(path), doraise=True)
