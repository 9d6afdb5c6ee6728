"""pite-synth: a synthetic world of moving shapes with exact ground truth, in the real data formats.

Renders clips of coloured shapes that move, stop, enter and leave the frame and pass in
front of each other, and writes all three training stages' data (Localized Narratives,
PiTe-143k style trajectories, conversations / grounding / dense captions / multiple choice)
plus per-clip ground truth, so the whole pipeline can be run and its learning measured here.
"""

from training.synth.generate import SYNTH_VERSION, generate
from training.synth.groundtruth import GroundTruth, load_ground_truth
from training.synth.language import split_words, vocabulary
from training.synth.world import WorldConfig

__all__ = ["SYNTH_VERSION", "GroundTruth", "WorldConfig", "generate", "load_ground_truth", "split_words", "vocabulary"]
