"""METEOR 1.5 through the official jar that the ``pycocoevalcap`` wheel ships (offline).

coco-caption, densevid_eval and SODA all score METEOR with ``meteor-1.5.jar -l en -norm``;
the wheel carries the jar and its English paraphrase table, so the real METEOR runs here
without a download; it needs a Java runtime (``java`` on PATH; Debian's openjdk-17 is on
this project's machines). nltk's ``meteor_score`` is not used: it needs WordNet data that
cannot be downloaded at run time and is not the official scorer.

``meteor_unavailable_reason()`` says why METEOR cannot run (None when it can); callers
report METEOR (and SODA_c, which is built on it) as unavailable with that reason instead of
a made-up number. The JVM starts on first use (about 10 s: it loads the paraphrase table)
and serves every later call; close it with ``close()`` or a ``with`` block.

Protocol (the jar's ``-stdio`` mode, as coco-caption's wrapper uses it): one line
``SCORE ||| ref1 ||| ref2 ||| hyp`` per segment answers a line of statistics; one line
``EVAL ||| stats1 ||| stats2 ...`` answers one line per segment score, then the aggregate
score of all the segments (computed from summed statistics, not a mean of segment scores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class MeteorError(RuntimeError):
    """The METEOR jar could not be started or answered something unexpected."""


def _jar_path() -> Path | None:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar"


def meteor_unavailable_reason(java: str = "java") -> str | None:
    """Why the official METEOR cannot run here, or None when it can."""
    jar = _jar_path()
    if jar is None:
        return "pycocoevalcap is not installed (it ships meteor-1.5.jar): pip install pycocoevalcap"
    if not jar.is_file() or not (jar.parent / "data" / "paraphrase-en.gz").is_file():
        return f"{jar} or its data/paraphrase-en.gz is missing"
    if shutil.which(java) is None:
        return f"no Java runtime: '{java}' is not on PATH (METEOR 1.5 is a Java program)"
    return None


def _clean(text: str) -> str:
    return " ".join(text.replace("|||", " ").split())


class MeteorScorer:
    """One METEOR 1.5 JVM, started on first use. Inputs should be tokenised captions."""

    def __init__(self, java: str = "java", memory: str = "2G") -> None:
        self.java = java
        self.memory = memory
        self._process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self._process is None:
            reason = meteor_unavailable_reason(self.java)
            if reason:
                raise MeteorError(reason)
            jar = _jar_path()
            self._process = subprocess.Popen(
                [self.java, "-jar", f"-Xmx{self.memory}", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
                cwd=jar.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "LC_ALL": "C"},
                text=True,
                encoding="utf-8",
            )
        return self._process

    def _ask(self, line: str, answers: int) -> list[str]:
        process = self._start()
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
            replies = [process.stdout.readline() for _ in range(answers)]
        except (BrokenPipeError, OSError) as error:
            raise MeteorError(f"METEOR process failed: {error}") from None
        if any(not reply for reply in replies):
            raise MeteorError(f"METEOR process ended (exit code {process.poll()})")
        return [reply.strip() for reply in replies]

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> tuple[float, list[float]]:
        """``(aggregate, per-segment scores)`` for ``(hypothesis, references)`` pairs, in [0, 1]."""
        if not items:
            return 0.0, []
        stats = [
            self._ask(" ||| ".join(["SCORE", *(_clean(r) for r in refs), _clean(hyp)]), 1)[0] for hyp, refs in items
        ]
        replies = self._ask(" ||| ".join(["EVAL", *stats]), len(items) + 1)
        try:
            values = [float(reply) for reply in replies]
        except ValueError:
            raise MeteorError(f"unexpected METEOR reply: {replies[:3]}") from None
        return values[-1], values[:-1]

    def close(self) -> None:
        """Stop the JVM (a later ``score`` starts a new one)."""
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
