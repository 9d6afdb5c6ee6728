"""``pite-model describe``: parameters per component; pite-7b built on the meta device."""

from __future__ import annotations

import re
import resource

from pite_ros.model import load_config
from pite_ros.model.describe import build_on_meta, count_parameters
from pite_ros.tools.model_cli import main


def total_of(output: str) -> int:
    return int(re.search(r"^total\s+([\d,]+)", output, re.M).group(1).replace(",", ""))


def test_pite_7b_total_without_allocating(capsys):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    assert main(["describe", "pite-7b"]) == 0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    output = capsys.readouterr().out
    assert 6.5e9 <= total_of(output) <= 7.5e9
    assert grown_mib < 1024, f"describe allocated {grown_mib:.0f} MiB"  # fp32 weights would be ~28 GiB
    for component in ("vision tower", "adapter μ", "LLM", "LM embeddings + head", "localization projector φ",
                      "trajectory projector", "LoRA"):
        assert component in output


def test_tiny_counts_match_the_model_and_stage_trainables(capsys):
    model = build_on_meta(load_config("tiny"))
    assert all(p.is_meta for p in model.parameters())
    counts = count_parameters(model)
    assert sum(total for total, _ in counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["loc_projector"][0] == 64 * 2 + 2 and counts["traj_projector"][0] == 64 * 32 + 32
    assert main(["describe", "tiny", "--stage", "1"]) == 0
    output = capsys.readouterr().out
    lora = re.search(r"^LoRA\s+([\d,]+)\s+([\d,]+)", output, re.M)
    assert int(lora.group(1).replace(",", "")) > 0 and lora.group(1) == lora.group(2)
    assert main(["describe", "no-such-preset"]) == 2
