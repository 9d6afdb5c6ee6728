"""The ONNX runtime without torch: a robot image with ONNX Runtime (and transformers for the
tokenizer and config) answers a clip from an export when ``torch`` cannot be imported.

The child process hides torch the way a machine without it would (``find_spec`` finds
nothing, so transformers too sees no torch), imports the engine, answers the memorised clip
and reports its import time and the modules loaded; the answer must be the torch engine's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from pite_ros.engine.torch_engine import TorchEngine

CHILD = textwrap.dedent('''
    import json, sys, time

    import numpy as np

    class WithoutTorch:
        """A meta-path finder in front of each real one: torch and its kin are not found."""

        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("torch", "torchvision", "torchaudio"):
                return None
            return self.finder.find_spec(name, path, target)

        def __getattr__(self, name):  # find_distributions, invalidate_caches: the real finder's
            return getattr(self.finder, name)

    sys.meta_path[:] = [WithoutTorch(finder) for finder in sys.meta_path]
    started = time.perf_counter()
    from pite_ros.engine.onnx_engine import OnnxEngine
    import_seconds = time.perf_counter() - started
    export, frames, question, duration = sys.argv[1], np.load(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    engine = OnnxEngine(export, providers=["cpu"], num_threads=1)
    result = engine.answer(frames, question, duration)
    print(json.dumps({"import_seconds": import_seconds, "text": result.text, "token_ids": result.token_ids,
                      "trajectories": [p.trajectory.tolist() for p in result.phrases],
                      "loaded": sorted(name for name in ("torch", "peft", "accelerate") if name in sys.modules)}))
''')


def test_the_onnx_engine_answers_without_torch(exported, checkpoint, memorised_example, tmp_path):
    frames = tmp_path / "frames.npy"
    np.save(frames, memorised_example.frames)
    done = subprocess.run([sys.executable, "-c", CHILD, str(exported.directory), str(frames), memorised_example.prompt,
                           "6.0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nimport pite_ros.engine.onnx_engine without torch: {report['import_seconds']:.2f} s")
    assert report["loaded"] == []
    expected = TorchEngine(checkpoint).answer(memorised_example.frames, memorised_example.prompt, 6.0)
    assert report["text"] == expected.text == memorised_example.response
    assert report["token_ids"] == expected.token_ids
    found = np.asarray(report["trajectories"])
    assert found.shape == (len(expected.phrases), 4, 4, 2) and len(expected.phrases) >= 1
    assert np.allclose(found, [p.trajectory for p in expected.phrases], atol=1e-5)
