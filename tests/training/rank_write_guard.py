"""``pite-train`` with every rank but the main one forbidden to write under a folder.

Run under ``torchrun`` as ``rank_write_guard.py FOLDER pite-train-args...``: an audit hook
(PEP 578) raises ``PermissionError`` when a rank other than 0 opens a file for writing,
makes, renames or removes anything under FOLDER, so a stray write fails the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

WRITES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _is_write(event: str, args: tuple) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        return any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
    return event in WRITES


def guard(folder: Path) -> None:
    root = str(folder.resolve())

    def hook(event: str, args: tuple) -> None:
        if _is_write(event, args) and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path == root or path.startswith(root + os.sep):
                raise PermissionError(f"rank {os.environ['RANK']} wrote {path} ({event})")

    if int(os.environ.get("RANK", "0")) != 0:
        sys.addaudithook(hook)


if __name__ == "__main__":
    guard(Path(sys.argv[1]))
    from training.train import main

    sys.exit(main(sys.argv[2:]))
