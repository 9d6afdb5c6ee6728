"""The fixed instructions and answer formats every reader uses (documented in docs/data-formats.md).

Grounding-style prompts follow Grounded-VideoLLM's own wording (inference.py of
WHB139426/Grounded-Video-LLM): the grounding question, and "Question: ...\\nOptions:\\n(A) ..."
for multiple choice. ``GROUNDED_TOKEN`` opens every prompt whose answer holds temporal
tokens, as Grounded-VideoLLM prepends its grounding token (docs/papers.md, "Unified temporal
tokens": "a special <grounded> token asks the model for grounded timestamps").
"""

from __future__ import annotations

import string

from pite_ros.model.temporal import seconds_to_token

STAGE1_PROMPT = "Describe the image."
STAGE2_PROMPT = "Describe the video."
GROUNDED_TOKEN = "<grounded>"
GROUNDING_PROMPT = (
    'Give you a textual query: "{query}". When does the described content occur in the video? '
    "Please return the start and end timestamps."
)
DENSE_PROMPT = (
    "Localize a series of events in the video, output the start and end timestamps for each "
    "event, and describe each event."
)
OPTION_LETTERS = string.ascii_uppercase
# An earlier turn of a conversation, as it appears in a later turn's prompt.
HISTORY_TURN = "USER: {question}\nASSISTANT: {answer}\n"


def grounded(prompt: str) -> str:
    """``prompt`` marked as asking for temporal tokens in the answer."""
    return f"{GROUNDED_TOKEN} {prompt}"


def segment_text(start: float, end: float, duration: float) -> str:
    """``From <a> to <b>`` for a segment in seconds of a clip of ``duration`` seconds."""
    return f"From {seconds_to_token(start, duration)} to {seconds_to_token(end, duration)}"


def grounding_response(segments: list[tuple[float, float]], duration: float) -> str:
    """``From <a> to <b>.`` per segment, joined by spaces."""
    return " ".join(f"{segment_text(s, e, duration)}." for s, e in segments)


def dense_response(events: list[tuple[float, float, str]], duration: float) -> str:
    """``From <a> to <b>, caption.`` per event (a caption's own final period is dropped)."""
    return " ".join(
        f"{segment_text(s, e, duration)}, {caption.strip().rstrip('.')}." for s, e, caption in events
    )


def choice_prompt(question: str, options: list[str]) -> str:
    """Grounded-VideoLLM's multiple-choice prompt: ``Question: q\\nOptions:\\n(A) ...``."""
    lines = [f"({OPTION_LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return f"Question: {question}\nOptions:\n" + "\n".join(lines)


def choice_response(index: int, option: str) -> str:
    """``option text (B).``: the option's text, then its letter (its own final period dropped).

    Deviation: the text comes first, the letter after it. A small model trained from scratch
    picks the right option text far more often than the right letter when it must write the
    letter first (the default model before this change, 200 held-out questions: text 59.5 %,
    letter 42.0 %); written after the text, the letter is a copy of the one the prompt puts
    before that text. ``parse_choice`` reads such an answer by its text.
    """
    return f"{option.strip().rstrip('.')} ({OPTION_LETTERS[index]})."
