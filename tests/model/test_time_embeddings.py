"""The temporal tokens' ordinal start (``time_token_init: ordinal``)."""

from __future__ import annotations

import math

import pytest
import torch

from pite_ros.model import ConfigError, PiteConfig, PiteForConditionalGeneration, build_model, load_config
from pite_ros.model.time_embeddings import sinusoidal_codes


def time_rows(model: PiteForConditionalGeneration) -> list[torch.Tensor]:
    """The ``<0>..<M>`` rows of the input embeddings and of the LM head."""
    lm, ids = model.causal_lm(), model.config.time_token_ids()
    return [lm.get_input_embeddings().weight.detach()[ids], lm.get_output_embeddings().weight.detach()[ids]]


def neighbour_cosine(rows: torch.Tensor, distance: int) -> float:
    """Mean cosine between rows ``k`` and ``k + distance``."""
    unit = torch.nn.functional.normalize(rows.double(), dim=1)
    return (unit[:-distance] * unit[distance:]).sum(1).mean().item()


def built(tokenizer, init: str) -> PiteForConditionalGeneration:
    config = load_config("tiny")
    config.time_token_init = init
    torch.manual_seed(0)
    return build_model(config, tokenizer)


def test_codes_have_equal_norms_and_similarity_falls_with_distance():
    codes = sinusoidal_codes(301, 16)
    assert codes.shape == (301, 32)
    torch.testing.assert_close(codes.norm(dim=1), torch.full((301,), math.sqrt(16), dtype=torch.float64))
    similarity = [neighbour_cosine(codes, d) for d in (1, 3, 10, 30)]
    assert similarity == sorted(similarity, reverse=True)
    assert similarity[0] > 0.8 and similarity[-1] < 0.2
    # the slowest frequency turns half a circle over the rows: first and last row are opposite there
    assert codes[0, 0] == pytest.approx(1.0) and codes[-1, 0] == pytest.approx(-1.0)


def test_ordinal_init_makes_neighbouring_bins_alike_and_changes_nothing_else(tokenizer):
    random_model, ordinal_model = built(tokenizer, "random"), built(tokenizer, "ordinal")
    for random_rows, ordinal_rows in zip(time_rows(random_model), time_rows(ordinal_model)):
        assert abs(neighbour_cosine(random_rows, 1)) < 0.2
        assert neighbour_cosine(ordinal_rows, 1) > 0.8
        assert neighbour_cosine(ordinal_rows, 1) > neighbour_cosine(ordinal_rows, 10) > neighbour_cosine(ordinal_rows, 100)
        # same scale as the rows they sit among
        assert ordinal_rows.norm(dim=1).mean().item() == pytest.approx(random_rows.norm(dim=1).mean().item(), rel=0.15)
    ids = ordinal_model.config.time_token_ids()
    for (name, before), after in zip(random_model.state_dict().items(), ordinal_model.state_dict().values()):
        if "embed_tokens" in name or "lm_head" in name:
            keep = torch.ones(before.shape[0], dtype=torch.bool)
            keep[ids] = False
            before, after = before[keep], after[keep]
        torch.testing.assert_close(after, before, rtol=0, atol=0, msg=name)


def test_ordinal_init_survives_a_save_and_load(tokenizer, tmp_path):
    model = built(tokenizer, "ordinal")
    model.save_pretrained(tmp_path)
    loaded = PiteForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.time_token_init == "ordinal"
    for saved, read in zip(time_rows(model), time_rows(loaded)):
        torch.testing.assert_close(read, saved)


def test_unknown_time_token_init_is_refused_by_name():
    with pytest.raises(ConfigError, match="time_token_init"):
        PiteConfig(time_token_init="linear")
