"""The set-up itself, from a fresh clone: `make setup` from nothing, then idempotent and fast.

This is what CI's clean machine does first; running it inside the suite proves that the
committed Makefile, requirements and interface package are enough on their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path) -> float:
    """Run ``command`` and return its wall time; fail with its output when it fails."""
    start = time.monotonic()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return time.monotonic() - start


def test_fresh_clone_sets_up_from_nothing_and_again_in_seconds(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], cwd=tmp_path)
    python = os.environ.get("PYTHON", "python3")
    cold = run(["make", "setup", f"PYTHON={python}"], cwd=clone)
    warm = run(["make", "setup", f"PYTHON={python}"], cwd=clone)
    venv_python = clone / ".venv" / "bin" / "python"
    probe = subprocess.run(
        [str(venv_python), "-c",
         "import pite_msgs.msg, pite_msgs.srv, pite_msgs.action, rclpy, torch, pite_ros;"
         "print(torch.__version__, pite_ros.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    version, package_file = probe.stdout.split()
    assert version.startswith("2.13.0"), "torch must stay the pinned CPU build"
    assert Path(package_file).is_relative_to(clone), "pite_ros must be installed editable from the clone"
    print(f"\nfresh-clone set-up: cold {cold:.0f} s, second run {warm:.1f} s", file=sys.stderr)
    assert warm < 15.0
