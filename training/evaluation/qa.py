"""Question-answering metrics: open-ended exact match and multiple-choice accuracy.

Open-ended VideoQA (MSVD-QA, MSRVTT-QA, ActivityNet-QA): the papers (PiTe, and Video-ChatGPT's
protocol they follow) score accuracy and a 0-5 score with an LLM judge (GPT-3.5), which cannot
run offline. Here accuracy is the share of answers whose ``normalize_answer`` form equals a
reference's: stricter than the judge (a correct paraphrase counts as wrong), so it is a lower
bound and not comparable with the papers' figures.

Multiple choice: the chosen option is read from the free-text answer (``parse_choice``); an
answer from which no option can be read is wrong and stays in the denominator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pite_ros.model.temporal import strip_time_tokens
from training.evaluation.text import normalize_answer

# "(B)" anywhere at the start; "B." / "B)" / "B:" at the start; or the bare letter alone.
# A bare letter followed by more words ("A man walks") is not read as a letter.
_LETTER = re.compile(
    r"^\s*(?:(?:the\s+)?answer(?:\s+is)?\s*:?\s*|option\s+)?"
    r"(?:\(([A-Za-z])\)|([A-Za-z])(?:[.):]|\s*$))",
    re.IGNORECASE,
)
# "(B)" after the text: the form the default model's answers take (``choice_response``).
_TRAILING_LETTER = re.compile(r"\(([A-Za-z])\)")


def exact_match(prediction: str, references: str | Sequence[str]) -> bool:
    """Whether ``prediction`` equals any reference after ``normalize_answer``."""
    refs = [references] if isinstance(references, str) else list(references)
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(ref) for ref in refs)


def parse_choice(text: str, options: Sequence[str]) -> int | None:
    """The index of the option ``text`` chooses, or None when none can be read.

    In order: a letter (``(B)``, ``B.``, ``B)``, ``B:``, ``Answer: B``, or ``B`` alone; case
    ignored; it must name one of the options); else the option whose normalised text equals
    the normalised answer; else the option whose normalised text appears in the answer as
    whole words, when exactly one does once options contained in a longer matching option are
    set aside (``"the left"`` over ``"left"``); else, when the text names no option or
    several, the last parenthesised letter after it (``"up (A)."``). Temporal tokens are ignored.
    """
    clean = strip_time_tokens(text)
    match = _LETTER.match(clean)
    if match:
        index = ord((match.group(1) or match.group(2)).upper()) - ord("A")
        return index if index < len(options) else None
    answer = normalize_answer(clean)
    keys = [normalize_answer(option) for option in options]
    exact = [i for i, key in enumerate(keys) if key and key == answer]
    if len(exact) == 1:
        return exact[0]
    padded = f" {answer} "
    found = [i for i, key in enumerate(keys) if key and f" {key} " in padded]
    maximal = [i for i in found if not any(j != i and keys[i] != keys[j] and keys[i] in keys[j] for j in found)]
    if len(maximal) == 1:
        return maximal[0]
    letters = _TRAILING_LETTER.findall(clean)
    index = ord(letters[-1].upper()) - ord("A") if letters else len(options)
    return index if index < len(options) else None
