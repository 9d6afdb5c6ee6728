"""The shipped default model's export: parity with torch, int8 held to its agreement goal, and the
ONNX engine's answers (trajectories and visibility from one projector run per phrase) equal to
torch's. One export (fp32 + int8) for the module: the dynamo export is most of its ~1 minute."""

from __future__ import annotations

import numpy as np
import pytest

from pite_ros.engine.export import AGREEMENT_GOAL, export_onnx
from pite_ros.engine.loader import DEFAULT_MODEL_DIR
from pite_ros.engine.onnx_engine import OnnxEngine
from pite_ros.engine.onnx_parity import probes
from pite_ros.engine.torch_engine import TorchEngine

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(),
                                reason="no shipped default model in this checkout")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    return export_onnx(DEFAULT_MODEL_DIR, tmp_path_factory.mktemp("shipped") / "onnx", int8=True)


def test_parity_with_torch(shipped):
    parity = shipped.parity
    assert parity["passed"] and parity["greedy_identical"], parity.get("failures")
    assert max(parity["max_abs_diff"].values()) < 1e-4


def test_int8_agrees_with_torch_on_its_goal(shipped):
    report = shipped.agreement["int8"]
    assert report["measured"] and report["tokens"] >= 30
    assert report["token_agreement"] >= AGREEMENT_GOAL == 0.95


def test_answers_with_one_projector_run_per_phrase(shipped):
    onnx_engine = OnnxEngine(shipped.directory, providers=["cpu"], num_threads=1)
    torch_engine = TorchEngine(DEFAULT_MODEL_DIR, num_threads=1)
    projector, runs = onnx_engine.backend.projector, []

    class Counted:  # the session, counting its runs
        def __getattr__(self, name):
            return getattr(projector, name)

        def run(self, *args, **kwargs):
            runs.append(args[0])
            return projector.run(*args, **kwargs)

    onnx_engine.backend.projector = Counted()
    phrases = 0
    for clip in probes(torch_engine.model.config, 2, seed=5, size=(120, 160)):
        expected, found = (engine.answer(clip.frames, clip.question, clip.duration)
                           for engine in (torch_engine, onnx_engine))
        assert found.token_ids == expected.token_ids
        assert [p.span for p in found.phrases] == [p.span for p in expected.phrases]
        for ours, theirs in zip(found.phrases, expected.phrases):
            assert np.allclose(ours.trajectory, theirs.trajectory, atol=1e-4)
            assert ours.visibility is not None and np.allclose(ours.visibility, theirs.visibility, atol=1e-4)
        phrases += len(found.phrases)
    assert phrases >= 1 and len(runs) == phrases  # trajectory and visibility of a phrase: one run
