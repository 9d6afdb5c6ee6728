"""Pinned CPU numerics, meant to let a recipe's seed give the same weights on every x86 host.

The same seed on the same code gives bit-identical weights on one host, but not across
hosts: PyTorch dispatches its kernels by the CPU's instruction set (AVX2 / AVX-512), MKL picks
its own code path per processor (on AMD not even its AVX2 one), and reductions split work by
thread count. Each changes the float rounding, and a run of a thousand steps drifts into a
different model (measured here: 20 steps of the default stage 1 give other bytes with
``MKL_CBWR=AVX2`` or ``ATEN_CPU_CAPABILITY=default``, the same bytes run after run with one
setting). The recipe's subprocesses therefore run with the libraries' own pins: ATen's and
oneDNN's AVX2 kernels, MKL's conditional numerical reproducibility on its AVX2 branch, two
threads. On the 2-core AVX2 host it was measured on that cost about 5 % of a step over 20
steps and nothing measurable over the default stage 1's 1200 (median 0.72 s against 0.76 s);
an AVX-512 host gives up its wider kernels. Across hosts this is not enough: a rebuild of
the default model's stages 0 and 1 with these pins on later hosts (one an AMD EPYC) ended at
other losses and bytes (its model card), from data generated there.
"""

from __future__ import annotations

import torch

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
PINNABLE = ("AVX2", "AVX512")  # torch.backends.cpu.get_cpu_capability() of hosts that run AVX2 kernels


def pinned_numerics(capability: str | None = None) -> tuple[dict[str, str], str | None]:
    """The environment variables to run a recipe's steps with and, when this CPU cannot take
    them (no AVX2: another architecture or an old x86), none and the reason."""
    capability = capability or torch.backends.cpu.get_cpu_capability()
    if capability not in PINNABLE:
        return {}, f"CPU capability {capability}: no AVX2 kernels to pin, results differ from an AVX2 host's"
    return dict(PINNED), None
