"""The prompt formats, and turning a question or an answer into token ids.

PiTe uses Vicuna v1.1's conversation format (the authors' ``conv_templates["v1"]``), with
the video placeholder before the question: ``{system} USER: <video>\\n{question} ASSISTANT:``.
Models built here from scratch leave the system sentence out (``system_prompt=""``, the
brief's choice); models initialised from a pretrained Vicuna carry the authors' sentence
(``VICUNA_SYSTEM_PROMPT``). ``prompt_format="chat_template"`` instead renders the question as
one user turn with the LLM tokenizer's own chat template (a chat LLM other than Vicuna).

A training sequence is ``<s>`` (when the tokenizer has one and the template does not write
it) + the prompt + the answer tokens + ``</s>``; only the answer tokens and ``</s>`` are
labels. ``<video>`` is one token here; ``pite_ros.model.splice`` expands it to one position
per visual token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from pite_ros.model.config import PiteConfig

# The authors' conv_templates["v1"] system sentence (LLaVA's conversation.py, Vicuna v1.1).
VICUNA_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
PROMPT_TEMPLATE = "USER: {video}\n{question} ASSISTANT:"
VIDEO_TOKEN = "<video>"
GROUNDED_TOKEN = "<grounded>"
SEPARATOR_TOKEN = "<sep>"
_WORDS = re.compile(r"<[^<>\s]+>|\w+|[^\w\s]")


def format_prompt(question: str, config: PiteConfig | None = None, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The prompt text for ``question`` with the ``<video>`` placeholder, in ``config``'s format
    (default: Vicuna v1 without a system sentence); ``chat_template`` needs the ``tokenizer``."""
    user = PROMPT_TEMPLATE.format(video=VIDEO_TOKEN, question=question.strip())
    if config is None or config.prompt_format == "vicuna_v1":
        system = (config.system_prompt if config is not None else "").strip()
        return f"{system} {user}" if system else user
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt_format 'chat_template' needs a tokenizer with a chat template")
    messages = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    messages.append({"role": "user", "content": f"{VIDEO_TOKEN}\n{question.strip()}"})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def template_words() -> list[str]:
    """The template's own words (``user``, ``:``, ``assistant``), for word-level vocabularies."""
    text = PROMPT_TEMPLATE.format(video="", question="").lower()
    return list(dict.fromkeys(_WORDS.findall(text)))


def encode_prompt(tokenizer: PreTrainedTokenizerBase, question: str, config: PiteConfig | None = None) -> list[int]:
    """``<s>`` (when the tokenizer has one and the prompt does not start with it) + the
    prompt's ids; exactly one id is the ``<video>`` placeholder."""
    ids = tokenizer(format_prompt(question, config, tokenizer), add_special_tokens=False)["input_ids"]
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    if ids.count(video_id) != 1:
        raise ValueError(f"the question must not contain {VIDEO_TOKEN}: {question!r}")
    bos = tokenizer.bos_token_id
    return ids if bos is None or ids[:1] == [bos] else [bos, *ids]


def encode_answer(tokenizer: PreTrainedTokenizerBase, answer: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The answer's ids followed by ``</s>``, and each id's character span in ``answer``
    (``</s>`` gets the empty span at the end)."""
    encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(span) for span in encoded["offset_mapping"]]
    return [*encoded["input_ids"], tokenizer.eos_token_id], [*offsets, (len(answer), len(answer))]
