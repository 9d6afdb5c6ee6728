"""The word-level tokenizer, PiTe tokens on a pretrained-style tokenizer, the prompt template."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

from pite_ros.model.config import ConfigError, load_config
from pite_ros.model.prompt import encode_answer, encode_prompt, format_prompt
from pite_ros.model.time_embeddings import add_pite_tokens
from pite_ros.model.tokenizer import bind_tokenizer, build_tokenizer, check_tokenizer


def test_ids_offsets_and_decoding(tokenizer):
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4, 5, 6]) == ["[UNK]", "<pad>", "<s>", "</s>", "<video>", "<grounded>", "<sep>"]
    text = "From <30> to <60>, a Red circle?"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    pieces = [text[a:b] for a, b in encoded["offset_mapping"]]
    assert pieces == ["From", "<30>", "to", "<60>", ",", "a", "Red", "circle", "?"]
    assert tokenizer.unk_token_id not in encoded["input_ids"]
    assert tokenizer.decode(encoded["input_ids"]) == "from <30> to <60>, a red circle?"
    assert tokenizer("a zebra")["input_ids"][-1] == tokenizer.unk_token_id
    choice = build_tokenizer(["(", ")", "b", "blue", "."], 3)
    assert choice.decode(choice("(B) blue.", add_special_tokens=False)["input_ids"]) == "(b) blue."


def test_bind_records_ids(tokenizer):
    config = bind_tokenizer(load_config("tiny"), tokenizer)
    assert (config.video_token_id, config.grounded_token_id, config.separator_token_id) == (4, 5, 6)
    assert tokenizer.convert_ids_to_tokens(config.time_token_offset + 47) == "<47>"
    assert config.text_config.vocab_size == len(tokenizer)
    assert config.text_config.pad_token_id == 1 and config.text_config.eos_token_id == 3
    check_tokenizer(config, tokenizer)
    config.video_token_id = 9
    with pytest.raises(ConfigError, match="video_token_id"):
        check_tokenizer(config, tokenizer)


def test_prompt_template(tokenizer):
    assert format_prompt("What colour is the circle?") == "USER: <video>\nWhat colour is the circle? ASSISTANT:"
    ids = encode_prompt(tokenizer, "what colour is the circle?")
    assert ids[0] == tokenizer.bos_token_id and ids.count(4) == 1
    assert tokenizer.decode(ids) == "<s> user: <video> what colour is the circle? assistant:"
    with pytest.raises(ValueError, match="<video>"):
        encode_prompt(tokenizer, "what is <video>?")
    answer, offsets = encode_answer(tokenizer, "a red circle.")
    assert answer[-1] == tokenizer.eos_token_id and offsets == [(0, 1), (2, 5), (6, 12), (12, 13), (13, 13)]


def test_add_pite_tokens_grows_embeddings_with_the_mean():
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    pretrained = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=4, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                      num_attention_heads=2, tie_word_embeddings=False))
    old_embed = lm.get_input_embeddings().weight.detach().clone()
    old_head = lm.get_output_embeddings().weight.detach().clone()
    added = add_pite_tokens(lm, pretrained, num_time_bins=10)
    assert added == 3 + 11 and len(pretrained) == 18
    assert pretrained.pad_token == "<unk>"
    embed, head = lm.get_input_embeddings().weight, lm.get_output_embeddings().weight
    assert embed.shape == (18, 8) and head.shape == (18, 8)
    assert torch.equal(embed[:4], old_embed)
    assert torch.allclose(embed[4:], old_embed.mean(0).expand(14, 8))
    assert torch.allclose(head[4:], old_head.mean(0).expand(14, 8))
    config = load_config("tiny")
    config.num_time_bins = 10
    bind_tokenizer(config, pretrained)
    assert (config.video_token_id, config.time_token_offset) == (4, 7)


def test_missing_tokens_are_reported():
    plain = build_tokenizer(["a"], 5)
    config = load_config("tiny")  # M = 300: <6>..<300> are missing
    with pytest.raises(ConfigError, match="lacks PiTe tokens"):
        bind_tokenizer(config, plain)
