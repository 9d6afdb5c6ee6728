"""The parameter file, the declared parameters and the launch files agree."""

from __future__ import annotations

import importlib.util
import py_compile
import sys
import types
from pathlib import Path

import pytest
import yaml

from pite_ros.node.parameters import SPECS

ROOT = Path(__file__).resolve().parents[2]


def test_config_file_lists_every_declared_parameter_with_its_default() -> None:
    values = yaml.safe_load((ROOT / "config" / "pite.yaml").read_text())["/**/pite_node"]["ros__parameters"]
    assert set(values) == set(SPECS)
    for name, spec in SPECS.items():
        assert values[name] == spec.default, name
        assert type(values[name]) is type(spec.default), name  # ROS refuses a changed parameter type


def test_launch_files_compile() -> None:
    for path in (ROOT / "launch").glob("*.launch.py"):
        py_compile.compile(str(path), doraise=True)


def _load_launch_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ``generate_launch_description`` of ``path`` against stand-ins of launch/launch_ros
    (not installable from the ROS wheels); returns what the LifecycleNode was given."""
    created: dict = {}

    def record(kind: str):
        def make(*args, **kwargs):
            created.setdefault(kind, []).append((args, kwargs))
            return (kind, args, kwargs)
        return make

    modules = {
        "launch": {"LaunchDescription": record("description")},
        "launch.actions": {name: record(name) for name in ("DeclareLaunchArgument", "ExecuteProcess",
                                                          "SetEnvironmentVariable")},
        "launch.substitutions": {"LaunchConfiguration": lambda name: ("config", name)},
        "launch_ros.actions": {"LifecycleNode": record("node")},
        "ament_index_python.packages": {"get_package_share_directory": lambda _name: "/share/pite_ros"},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate_launch_description()
    return created


def test_launch_file_namespaces_the_node_and_its_arguments_override_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    created = _load_launch_file(ROOT / "launch" / "pite.launch.py", monkeypatch)
    declared = {args[0] for args, _ in created["DeclareLaunchArgument"]}
    assert {"namespace", "params_file", "image_topic", "engine", "autostart"} <= declared
    (_, node), = created["node"]
    assert node["namespace"] == ("config", "namespace") and node["name"] == "pite_node"
    file, overrides = node["parameters"]  # the file first, so the arguments after it win
    assert file == ("config", "params_file") and overrides["image_topic"] == ("config", "image_topic")


def test_the_docs_parameter_table_is_the_specs() -> None:
    """docs/node.md shows every parameter as declared (name, default, values, read-only, description)."""
    from pite_ros.node.parameters import parameter_table

    page = (ROOT / "docs" / "node.md").read_text()
    assert parameter_table() in page, "docs/node.md's parameter table differs from SPECS; paste:\n" + parameter_table()
