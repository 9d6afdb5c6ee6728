"""Grounded multiple-choice QA from timestamped open QA pairs (Grounded-VideoLLM's recipe).

``records`` reads and validates the QA pairs, ``embedder`` holds the sentence embedders
(the offline all-MiniLM-L6-v2 and the ``Embedder`` interface), ``generate`` picks the
distractors and writes stage-3 multiple-choice records, ``cli`` is ``pite-mcq``.
"""

from training.mcq.generate import MCQConfig, generate_mcq
from training.mcq.records import QAPair, read_qa_pairs

__all__ = ["MCQConfig", "QAPair", "generate_mcq", "read_qa_pairs"]
