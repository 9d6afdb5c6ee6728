"""Every random generator a training process draws from, as JSON, so a resume continues them.

Python's ``random``, NumPy's legacy global generator, torch's CPU generator and, where CUDA is
present, each CUDA device's generator. A multi-process run keeps one such state per rank
(each rank draws its own dropout masks and worker seeds), gathered by the main process into
the checkpoint; tensors and arrays are stored as lists of ints so nothing is pickled.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture() -> dict:
    """This process's random state (JSON-serialisable)."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {**legacy, "state": {"key": legacy["state"]["key"].tolist(), "pos": int(legacy["state"]["pos"])}},
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [device_state.tolist() for device_state in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict) -> None:
    """Set this process's generators to ``state`` (from ``capture``)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    legacy = state["numpy"]
    np.random.set_state({**legacy, "state": {"key": np.asarray(legacy["state"]["key"], dtype=np.uint32),
                                             "pos": legacy["state"]["pos"]}})
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
