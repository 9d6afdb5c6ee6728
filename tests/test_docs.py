"""Documentation that cannot rot: every command the README and docs/ show exists with the flags
and node parameters they use, and the blocks marked runnable run.

- Every line of a ``bash`` block that starts with a project command (a console script of
  setup.py) is checked: the command (and its subcommand) exists, and each ``--flag`` on the
  line is in that command's ``--help``. ``pite-node``'s ``-p NAME:=VALUE`` names must be
  node parameters (``pite_ros.node.parameters.SPECS``).
- A block preceded by the line ``<!-- runnable -->`` is run as written by bash, in a fresh
  folder, with the venv's commands on the PATH; it must exit 0 within its time.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNABLE = "<!-- runnable -->"
BLOCK = re.compile(r"(?P<marker><!-- runnable -->\n)?```bash\n(?P<body>.*?)```", re.S)


def blocks(page: Path) -> list[tuple[bool, str]]:
    """``(runnable, text)`` of every ``bash`` block of ``page``."""
    return [(bool(match["marker"]), match["body"]) for match in BLOCK.finditer(page.read_text())]


def commands_of(text: str) -> list[list[str]]:
    """The project commands of a block, one token list each (continuation lines joined, comments cut)."""
    joined = text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            part = part.replace("[", " ").replace("]", " ")
            try:
                tokens = shlex.split(part)
            except ValueError:  # an unbalanced quote in prose-like arguments: split on blanks
                tokens = part.split()
            if tokens and tokens[0] in scripts():
                found.append(tokens)
    return found


@cache
def scripts() -> dict[str, object]:
    """This package's console scripts: name -> entry point."""
    return {e.name: e for e in entry_points(group="console_scripts") if e.value.startswith(("pite_ros.", "training."))}


@cache
def help_text(command: str, sub: str | None) -> str:
    """``command [sub] --help`` as printed, run in this process (the entry points take ``argv``)."""
    main = scripts()[command].load()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        main([*([sub] if sub else []), "--help"])
    return out.getvalue()


def subcommands(command: str) -> list[str]:
    match = re.search(r"^positional arguments:\n\s+\{([\w,-]+)\}", help_text(command, None), re.M)
    return match.group(1).split(",") if match else []


def check(tokens: list[str]) -> list[str]:
    """What is wrong with one shown command line (empty: nothing)."""
    command, rest = tokens[0], tokens[1:]
    problems = []
    if "--ros-args" in rest:  # pite-node: its own flags before, ROS parameters after
        at = rest.index("--ros-args")
        rest, ros = rest[:at], rest[at + 1:]
        from pite_ros.node.parameters import SPECS

        for flag, value in zip(ros, ros[1:]):
            if flag == "-p" and value.split(":=")[0] not in SPECS:
                problems.append(f"{command}: -p {value}: no such node parameter")
    choices = subcommands(command)
    sub = rest[0] if choices and rest and not rest[0].startswith("-") else None
    if choices and sub not in choices:
        return [f"{command} {sub}: no such subcommand (has {', '.join(choices)})"]
    text = help_text(command, sub)
    for flag in (token.split("=")[0] for token in rest if token.startswith("--")):
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
            problems.append(f"{command}{' ' + sub if sub else ''}: {flag} is not in its --help")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_shown_command_and_flag_exists(page: Path) -> None:
    problems = [problem for _, text in blocks(page) for tokens in commands_of(text) for problem in check(tokens)]
    assert problems == [], f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_check_catches_a_stale_flag_and_command() -> None:
    assert check(["pite-model", "init", "--vision", "x", "--llm", "y", "--no-such-flag"]) == \
        ["pite-model init: --no-such-flag is not in its --help"]
    assert check(["pite-model", "frobnicate"])[0].startswith("pite-model frobnicate: no such subcommand")
    assert check(["pite-node", "--params", "f.yaml", "--ros-args", "-p", "image_topc:=/x"]) == \
        ["pite-node: -p image_topc:=/x: no such node parameter"]
    assert check(["pite-eval", "--model", "m", "--data", "d", "--device", "cuda"]) == []


RUNNABLE_BLOCKS = [(page, text) for page in PAGES for runnable, text in blocks(page) if runnable]


@pytest.mark.parametrize("page, text", RUNNABLE_BLOCKS,
                         ids=[f"{p.relative_to(REPO)}:{t.splitlines()[0][:40]}" for p, t in RUNNABLE_BLOCKS])
def test_runnable_blocks_run(page: Path, text: str, tmp_path: Path) -> None:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "REPO": str(REPO)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page.relative_to(REPO)} block failed:\n{text}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_there_are_runnable_blocks() -> None:
    assert len(RUNNABLE_BLOCKS) >= 2
