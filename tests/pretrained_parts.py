"""Small models in the formats the real ones come in, built by the tests (nothing downloaded).

- ``save_clip``: a ``CLIPVisionModelWithProjection`` (ViT 2 × 32 on 32-px frames, patch 8,
  projection 24) with a ``CLIPImageProcessor`` whose mean and std differ from CLIP's, saved
  with ``save_pretrained``, as ``openai/clip-vit-large-patch14`` is laid out.
- ``save_llama``: a ``LlamaForCausalLM`` (2 × 64) with a byte-level BPE tokenizer trained here
  with ``tokenizers`` on the synthetic world's sentences, ``<s>``/``</s>``/``<unk>`` as
  Vicuna's, saved with ``save_pretrained``, as ``lmsys/vicuna-7b-v1.5`` is (a 7B's shapes and
  a SentencePiece vocabulary are the only differences).
- ``save_sentencepiece_llama``: the same LLaMA with a SentencePiece BPE model trained here
  (``tokenizer.model`` + ``tokenizer_config.json`` only, exactly Vicuna's tokenizer files).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import sentencepiece
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

IMAGE_MEAN = [0.5, 0.45, 0.4]
IMAGE_STD = [0.25, 0.3, 0.35]
CORPUS = [
    "a red circle moves left across the frame.",
    "a small blue square enters from the right and leaves at the top.",
    "what colour is the large yellow star? it is yellow.",
    "describe the video. a green triangle stays still while a red circle moves.",
    "where is the square? the square is in the lower left corner.",
]


def clip_config(**overrides) -> CLIPVisionConfig:
    values = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8, projection_dim=24)
    return CLIPVisionConfig(**{**values, **overrides})


def save_clip(path: Path, seed: int = 1) -> Path:
    torch.manual_seed(seed)
    CLIPVisionModelWithProjection(clip_config()).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=IMAGE_MEAN,
                       image_std=IMAGE_STD).save_pretrained(path)
    return path


def bpe_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``CORPUS`` (GPT-2's pre-tokenizer and decoder)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   clean_up_tokenization_spaces=False)


def save_llama(path: Path, seed: int = 2, **tokenizer_overrides) -> Path:
    tokenizer = bpe_tokenizer()
    for name, value in tokenizer_overrides.items():
        setattr(tokenizer, name, value)
    tokenizer.save_pretrained(path)
    return _save_llama_weights(path, tokenizer, seed)


def save_sentencepiece_llama(path: Path, seed: int = 2) -> Path:
    """Vicuna's layout: a SentencePiece ``tokenizer.model`` (BPE, byte fallback, ``<unk> <s> </s>``
    as ids 0, 1, 2) and a ``tokenizer_config.json`` naming ``LlamaTokenizer``; no tokenizer.json."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=320, model_type="bpe", unk_id=0,
        bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, character_coverage=1.0, minloglevel=2)
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.model").write_bytes(model.getvalue())
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "legacy": False, "add_bos_token": True}))
    from transformers import AutoTokenizer

    return _save_llama_weights(path, AutoTokenizer.from_pretrained(path), seed)


def _save_llama_weights(path: Path, tokenizer, seed: int) -> Path:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def stage_in_hub_cache(folder: Path, hf_home: Path, repo_id: str) -> None:
    """Put a ``save_pretrained`` ``folder`` into the Hub cache under ``hf_home`` as ``repo_id``, the way
    a download leaves it (``hub/models--owner--name/snapshots/<commit>`` and ``refs/main``)."""
    commit = "0" * 40
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
