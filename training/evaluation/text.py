"""Text normalisation for scoring: short answers (exact match) and captions (n-gram metrics).

Two normalisations, for two jobs:

- ``normalize_answer``: open-ended and multiple-choice answers. SQuAD's ``normalize_answer``
  (lowercase, drop punctuation characters, drop the articles a/an/the, collapse whitespace),
  after removing temporal tokens ``<n>`` with ``pite_ros.model.temporal.strip_time_tokens``
  so that ``"red. From <3> to <9>."`` and ``"Red"`` compare equal.
- ``caption_tokens``: captions for CIDEr, METEOR and SODA. coco-caption and the dense-captioning
  evaluators (densevid_eval, SODA) run Stanford's PTBTokenizer (Java) and drop punctuation
  tokens; this is a regex approximation of it, so that scores do not depend on Java being
  present: non-ASCII characters become spaces (their ``remove_nonascii``), lowercase, clitics
  split as PTB does (``don't`` -> ``do n't``, ``man's`` -> ``man 's``), punctuation dropped,
  hyphenated words and decimals kept whole. Rare PTB rules (``cannot`` -> ``can not``,
  abbreviations) are not reproduced.
"""

from __future__ import annotations

import re
import string

from pite_ros.model.temporal import strip_time_tokens

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_CLITIC = re.compile(r"(n't|'s|'re|'ve|'ll|'d|'m)\b")
_CAPTION_TOKEN = re.compile(r"n't|'[a-z]+|[a-z0-9]+(?:[-.][a-z0-9]+)*")


def normalize_answer(text: str) -> str:
    """SQuAD-style normal form of a short answer (temporal tokens removed first)."""
    text = strip_time_tokens(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def caption_tokens(text: str) -> list[str]:
    """PTB-like tokens of a caption: lowercase words, punctuation dropped, clitics split."""
    text = _NON_ASCII.sub(" ", strip_time_tokens(text)).lower()
    return _CAPTION_TOKEN.findall(_CLITIC.sub(r" \1", text))


def caption_text(text: str) -> str:
    """``caption_tokens`` joined by single spaces (the form the n-gram scorers read)."""
    return " ".join(caption_tokens(text))
