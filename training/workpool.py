"""One function over many tasks in worker processes or on Ray, each worker set up once (a model
loaded): how ``pite-annotate run`` (its process pool; on Ray it runs stateless Ray tasks),
``pite-eval`` and ``pite-mcq`` spread their work.

``run_tasks(work, tasks, setup, setup_args, scale, on_crash)`` yields ``(task, result)`` as tasks
finish, in any order (callers key results by task, so the outcome does not depend on it):

- ``workers <= 1`` without Ray: in this process, ``state = setup(*setup_args)`` once, then
  ``work(state, task)`` for each task in order;
- ``workers > 1``: a spawn ``ProcessPoolExecutor`` whose processes each run ``setup`` once. A
  crashed worker (killed, out of memory) breaks the pool: it is rebuilt and the tasks in flight
  are tried again; a task in flight during ``MAX_CRASHES`` crashes is given up and
  ``on_crash(task)`` is yielded as its result (the caller counts and names it);
- Ray (``use_ray``): one actor per CPU of the cluster (``start_ray``: a local one of
  ``workers`` CPUs, or the one at ``ray_address``); Ray restarts a dead actor and retries its
  task, and a task that still fails gives ``on_crash(task)``.

``ShardStore`` keeps each finished task's result in a file (written whole, then renamed), so a
killed run rerun with the same settings skips what was finished and does it once. The files are
JSON or ``.npy`` (a ``ShardCodec``), never pickle: a file put in the folder must not run code
when a rerun reads it, and a kept result must not depend on the layout of the code's classes.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from training.atomic import write_bytes_atomic, write_text_atomic

MAX_CRASHES = 2  # tries of a task whose worker process dies
Task = TypeVar("Task")
Result = TypeVar("Result")
_STATE: dict[str, Any] = {}  # the worker process's state (set up by its pool initializer)


@dataclass(frozen=True)
class Scale:
    """Where the work runs: ``workers`` processes (or Ray CPUs of a local cluster), or Ray."""

    workers: int = 1
    use_ray: bool = False
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def worker_threads(self, threads: int) -> int:
        """A worker's compute threads: ``threads`` when given, else (0) the machine's cores shared
        among the workers (one process: 0, its library's default)."""
        if threads or (self.workers <= 1 and not self.use_ray):
            return threads
        return max(1, (os.cpu_count() or 1) // self.workers)


class StaleShards(ValueError):
    """A shard folder that holds the results of a run with other settings (the message says which)."""


class UnreadableShard(UserWarning):
    """A kept shard file that does not decode (truncated, edited): not trusted, its shard is recomputed."""


@dataclass(frozen=True)
class ShardCodec(Generic[Result]):
    """How a shard's result is kept on disk: the files' ``suffix`` and the result's bytes and back.
    ``decode`` reads untrusted bytes: it must run no code from them (no pickle) and raise on
    bytes it cannot read."""

    suffix: str
    encode: Callable[[Result], bytes]
    decode: Callable[[bytes], Result]


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npy_array(data: bytes) -> np.ndarray:
    with io.BytesIO(data) as buffer:
        array = np.lib.format.read_array(buffer, allow_pickle=False)  # the .npy format only
        if buffer.read(1):
            raise ValueError("bytes after the array")
    return array


NPY = ShardCodec(".npy", _npy_bytes, _npy_array)  # one numpy array per shard (``np.save``, no pickle)


class ShardStore(Generic[Result]):
    """Finished shards of one run in ``folder``: ``settings.json`` (what the run is) and
    ``shards/<index><codec.suffix>`` (a shard's result, ``codec.encode``). A folder of a run
    with other ``settings`` is refused (``StaleShards``) rather than mixed in; a kept file that
    does not decode is named in an ``UnreadableShard`` warning, counted in ``unreadable`` and
    not used (its shard is computed again and the file replaced)."""

    def __init__(self, folder: str | Path, settings: dict, codec: ShardCodec[Result]) -> None:
        self.folder = Path(folder)
        self.codec = codec
        self.unreadable = 0  # kept files that did not decode
        written = self.folder / "settings.json"
        text = json.dumps(settings, sort_keys=True, indent=1, default=str) + "\n"
        if written.is_file() and written.read_text(encoding="utf-8") != text:
            before = json.loads(written.read_text(encoding="utf-8"))
            changed = sorted(k for k in settings.keys() | before.keys() if json.dumps(
                before.get(k), default=str, sort_keys=True) != json.dumps(settings.get(k), default=str, sort_keys=True))
            raise StaleShards(f"{self.folder} holds the shards of a run with other settings ({', '.join(changed)}); "
                              f"delete it or write elsewhere")
        write_text_atomic(written, text)

    def path(self, index: int) -> Path:
        return self.folder / "shards" / f"{index:06d}{self.codec.suffix}"

    def save(self, index: int, result: Result) -> None:
        write_bytes_atomic(self.path(index), self.codec.encode(result))

    def kept(self, indices: Iterable[int], check: Callable[[int, Result], None] | None = None) -> dict[int, Result]:
        """The kept results of the shards ``indices`` that have a file that decodes and that
        ``check(index, result)`` (raising on a result that does not fit its shard) accepts;
        each other file is warned about and counted (class docstring)."""
        found: dict[int, Result] = {}
        for index in indices:
            path = self.path(index)
            if not path.is_file():
                continue
            try:
                result = self.codec.decode(path.read_bytes())
                if check is not None:
                    check(index, result)
            except Exception as error:  # noqa: BLE001 - whatever a kept file holds, it must not stop the run
                self.unreadable += 1
                warnings.warn(f"{path}: unreadable kept shard, computed again ({type(error).__name__}: {error})"[:300],
                              UnreadableShard, stacklevel=2)
                continue
            found[index] = result
        return found

    @staticmethod
    def remove(folder: str | Path) -> None:
        """Delete the shards kept in ``folder`` (the run's output is written: they are no longer
        needed), and the folder when nothing else is in it."""
        folder = Path(folder)
        shutil.rmtree(folder / "shards", ignore_errors=True)
        (folder / "settings.json").unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _setup_process(setup: Callable[..., Any], setup_args: tuple) -> None:
    _STATE["state"] = setup(*setup_args)


def _work_in_process(work: Callable[[Any, Task], Any], task: Task) -> Any:
    return work(_STATE["state"], task)


def run_tasks(
    work: Callable[[Any, Task], Any],
    tasks: Sequence[Task],
    setup: Callable[..., Any],
    setup_args: tuple,
    scale: Scale,
    on_crash: Callable[[Task], Any],
) -> Iterator[tuple[Task, Any]]:
    """Yield ``(task, work(state, task))`` for every task (module docstring). ``work``, ``setup``
    and ``on_crash`` must be module-level functions (they are pickled to the workers)."""
    if scale.use_ray:
        yield from _run_ray(work, tasks, setup, setup_args, scale, on_crash)
    elif scale.workers <= 1:
        state = setup(*setup_args)
        for task in tasks:
            yield task, work(state, task)
    else:
        yield from _run_pool(work, tasks, setup, setup_args, scale.workers, on_crash)


def _run_pool(work, tasks, setup, setup_args, workers: int, on_crash) -> Iterator[tuple[Any, Any]]:
    queue = list(reversed(tasks))
    crashes: Counter = Counter()
    context = multiprocessing.get_context("spawn")
    while queue:
        running: dict[Future, Any] = {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_setup_process,
                                 initargs=(setup, setup_args)) as pool:
            try:
                while queue or running:
                    while queue and len(running) < workers:
                        task = queue.pop()
                        running[pool.submit(_work_in_process, work, task)] = task
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = future.result()  # BrokenProcessPool if a worker died
                        yield running.pop(future), result
            except BrokenProcessPool:
                for future, task in running.items():
                    if future.done() and future.exception() is None:  # finished before the crash
                        yield task, future.result()
                        continue
                    crashes[repr(task)] += 1
                    if crashes[repr(task)] >= MAX_CRASHES:
                        yield task, on_crash(task)
                    else:
                        queue.append(task)


def start_ray(address: str | None, workers: int) -> int:
    """Join the Ray cluster at ``address``, or start a local one of ``workers`` CPUs; return its CPU
    count, the number of tasks it runs at once (a task takes one CPU)."""
    try:
        import ray
    except ImportError:
        raise SystemExit("--ray needs Ray: pip install 'pite_ros[ray]' (or pip install ray)") from None
    if address is None:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, ignore_reinit_error=True)
    else:
        ray.init(address=address, ignore_reinit_error=True)
    return int(ray.cluster_resources().get("CPU", workers))


class _Actor:
    """A Ray worker: set up once, then runs tasks."""

    def __init__(self, setup: Callable[..., Any], setup_args: tuple) -> None:
        self.state = setup(*setup_args)

    def run(self, work: Callable[[Any, Any], Any], task: Any) -> Any:
        return work(self.state, task)


def _run_ray(work, tasks, setup, setup_args, scale: Scale, on_crash) -> Iterator[tuple[Any, Any]]:
    """One task in flight per actor; leaves the cluster (a local one stops) when done."""
    workers = start_ray(scale.ray_address, scale.workers)
    import ray

    actor_class = ray.remote(num_cpus=1, max_restarts=MAX_CRASHES, max_task_retries=MAX_CRASHES)(_Actor)
    try:
        idle = [actor_class.remote(setup, setup_args) for _ in range(max(1, min(workers, len(tasks))))]
        queue = list(reversed(tasks))
        running: dict = {}
        while queue or running:
            while queue and idle:
                actor, task = idle.pop(), queue.pop()
                running[actor.run.remote(work, task)] = (actor, task)
            done, _ = ray.wait(list(running), num_returns=1)
            for reference in done:
                actor, task = running.pop(reference)
                idle.append(actor)
                try:
                    yield task, ray.get(reference)
                except ray.exceptions.RayError:
                    yield task, on_crash(task)
    finally:
        ray.shutdown()
