"""Tokenizers: a word-level one built locally for small models, PiTe's tokens for any other.

Small models (``tiny``, the shipped default) have no pretrained tokenizer, so
``build_tokenizer`` builds a word-level fast tokenizer with the ``tokenizers`` library from
a word list: lower-cased, split on whitespace and at every punctuation mark (offsets map
back to the original characters, so ``return_offsets_mapping`` gives character spans),
with ``[UNK]``, ``<pad>``, ``<s>``, ``</s>``, the placeholder ``<video>``, ``<grounded>``
(Grounded-VideoLLM's request for timestamps), the segment separator ``<sep>`` and the
temporal tokens ``<0>..<M>`` (docs/papers.md, "Unified temporal tokens"). Decoding joins
words with spaces, attaches ``. , ? ! : ; )`` to the word before them and ``(`` to the word
after it ("(b) blue."); it does not restore case (the vocabulary is lower case).

A pretrained tokenizer (e.g. Vicuna's) gets the same PiTe tokens from ``extend_tokenizer``;
the LM's embeddings and head are fitted to it by ``pite_ros.model.time_embeddings`` (torch
stays out of this module: the ONNX runtime reads tokenizers without it).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from pite_ros.model.config import ConfigError, PiteConfig
from pite_ros.model.prompt import GROUNDED_TOKEN, SEPARATOR_TOKEN, VIDEO_TOKEN, template_words
from pite_ros.model.temporal import temporal_vocabulary

UNK, PAD, BOS, EOS = "[UNK]", "<pad>", "<s>", "</s>"
# Added to every tokenizer, in this order, before the temporal tokens.
PITE_TOKENS = (VIDEO_TOKEN, GROUNDED_TOKEN, SEPARATOR_TOKEN)
_ATTACHED_PUNCTUATION = ".,?!:;)"


def build_tokenizer(words: Iterable[str], num_time_bins: int) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over ``words`` (lower-cased), the prompt template's words,
    the special tokens and ``<0>..<num_time_bins>``.

    Ids: ``[UNK]`` 0, ``<pad>`` 1, ``<s>`` 2, ``</s>`` 3, ``<video>`` 4, ``<grounded>`` 5,
    ``<sep>`` 6, the words in first-seen order, then the temporal tokens (contiguous).
    """
    specials = [UNK, PAD, BOS, EOS, *PITE_TOKENS]
    vocab: dict[str, int] = {token: index for index, token in enumerate(specials)}
    for word in [*template_words(), *words]:
        word = word.lower()
        if word and word not in vocab and not word.isspace():
            vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    backend.decoder = decoders.Sequence(
        [decoders.WordPiece(prefix="##", cleanup=False), decoders.Fuse(), decoders.Replace("( ", "(")]
        + [decoders.Replace(f" {mark}", mark) for mark in _ATTACHED_PUNCTUATION]
    )
    backend.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in specials])
    backend.add_tokens([AddedToken(token, normalized=False) for token in temporal_vocabulary(num_time_bins)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=list(PITE_TOKENS),
        clean_up_tokenization_spaces=False,
    )


def extend_tokenizer(tokenizer: PreTrainedTokenizerBase, num_time_bins: int) -> list[int]:
    """Add ``<video> <grounded> <sep>`` and ``<0>..<M>`` (and a pad token, the unknown or else the
    end token, when there is none, as for Vicuna); returns the ids of the tokens that are new."""
    before = set(tokenizer.get_vocab().values())
    tokenizer.add_special_tokens({"additional_special_tokens": list(PITE_TOKENS)})
    tokenizer.add_tokens(temporal_vocabulary(num_time_bins))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return sorted(set(tokenizer.get_vocab().values()) - before)


def tokenizer_ids(tokenizer: PreTrainedTokenizerBase, num_time_bins: int) -> dict[str, int]:
    """The ids a ``PiteConfig`` records from ``tokenizer`` (``video_token_id``, ``grounded_token_id``,
    ``separator_token_id``, ``time_token_offset``), after checking that the PiTe tokens exist,
    that ``<0>..<M>`` are contiguous, and that there are pad and eos tokens."""
    times = temporal_vocabulary(num_time_bins)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*PITE_TOKENS, *times)}
    missing = [token for token, index in ids.items() if index is None or index == tokenizer.unk_token_id]
    if missing:
        more = "..." if len(missing) > 5 else ""
        raise ConfigError(f"tokenizer lacks PiTe tokens {missing[:5]}{more}: use add_pite_tokens")
    offset = ids[times[0]]
    if [ids[token] for token in times] != list(range(offset, offset + num_time_bins + 1)):
        raise ConfigError("tokenizer's temporal tokens <0>..<M> are not contiguous ids")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("tokenizer needs a pad and an eos token")
    return {
        "video_token_id": ids[VIDEO_TOKEN],
        "grounded_token_id": ids[GROUNDED_TOKEN],
        "separator_token_id": ids[SEPARATOR_TOKEN],
        "time_token_offset": offset,
    }


def bind_tokenizer(config: PiteConfig, tokenizer: PreTrainedTokenizerBase) -> PiteConfig:
    """Record ``tokenizer``'s ids in ``config`` (PiTe token ids, pad/bos/eos, vocabulary size = len)."""
    for key, value in tokenizer_ids(tokenizer, config.num_time_bins).items():
        setattr(config, key, value)
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    return config


def check_tokenizer(config: PiteConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """ConfigError unless ``tokenizer`` has the ids recorded in ``config`` and fits its vocabulary."""
    found = tokenizer_ids(tokenizer, config.num_time_bins)
    wrong = {key: (getattr(config, key), value) for key, value in found.items() if getattr(config, key) != value}
    if wrong:
        raise ConfigError(f"tokenizer ids differ from the config's (config, tokenizer): {wrong}")
    if len(tokenizer) > config.text_config.vocab_size:
        raise ConfigError(f"tokenizer has {len(tokenizer)} tokens, the model's vocabulary {config.text_config.vocab_size}")
