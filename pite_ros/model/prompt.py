"""The one prompt template, and turning a question or an answer into token ids.

PiTe uses Vicuna v1.1's conversation format (the authors' ``conv_templates["v1"]``), with
the video placeholder before the question; the system sentence is left out, the brief's
choice. A training sequence is ``<s>`` + ``USER: <video>\\n{question} ASSISTANT:`` + the
answer tokens + ``</s>``; only the answer tokens and ``</s>`` are labels. ``<video>`` is one
token here; ``pite_ros.model.splice`` expands it to one position per visual token.
"""

from __future__ import annotations

import re

from transformers import PreTrainedTokenizerBase

PROMPT_TEMPLATE = "USER: {video}\n{question} ASSISTANT:"
VIDEO_TOKEN = "<video>"
GROUNDED_TOKEN = "<grounded>"
SEPARATOR_TOKEN = "<sep>"
_WORDS = re.compile(r"<[^<>\s]+>|\w+|[^\w\s]")


def format_prompt(question: str) -> str:
    """The prompt text for ``question``, with the ``<video>`` placeholder."""
    return PROMPT_TEMPLATE.format(video=VIDEO_TOKEN, question=question.strip())


def template_words() -> list[str]:
    """The template's own words (``user``, ``:``, ``assistant``), for word-level vocabularies."""
    text = PROMPT_TEMPLATE.format(video="", question="").lower()
    return list(dict.fromkeys(_WORDS.findall(text)))


def encode_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """``<s>`` + the prompt's ids; exactly one id is the ``<video>`` placeholder."""
    ids = tokenizer(format_prompt(question), add_special_tokens=False)["input_ids"]
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    if ids.count(video_id) != 1:
        raise ValueError(f"the question must not contain {VIDEO_TOKEN}: {question!r}")
    return [tokenizer.bos_token_id, *ids]


def encode_answer(tokenizer: PreTrainedTokenizerBase, answer: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The answer's ids followed by ``</s>``, and each id's character span in ``answer``
    (``</s>`` gets the empty span at the end)."""
    encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(span) for span in encoded["offset_mapping"]]
    return [*encoded["input_ids"], tokenizer.eos_token_id], [*offsets, (len(answer), len(answer))]
