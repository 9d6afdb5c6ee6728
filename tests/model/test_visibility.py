"""The visibility head: its targets, its loss against a hand-computed BCE, what it learns, and that
answers carry it through both engines."""

from __future__ import annotations

import numpy as np
import torch

from pite_ros.engine.export import export_onnx
from pite_ros.engine.onnx_engine import OnnxEngine
from pite_ros.model.model_dir import save_model_and_processor
from pite_ros.model.stages import setup_stage, stage_loss_terms
from pite_ros.model.torch_generation import answer_with_model


def test_targets_are_the_phrase_tokens_visibility(model, processor, video_example) -> None:
    model.add_visibility_head()
    batch = processor([video_example])
    tokens = batch["vis_mask"][0].flatten(1).any(-1)
    assert tokens.sum() == batch["traj_mask"][0].flatten(1).any(-1).sum() > 0  # the phrase's tokens
    for index in torch.nonzero(tokens).flatten():
        assert torch.equal(batch["vis_targets"][0, index, ..., 0], torch.as_tensor(video_example.trajectories[0].visible).float())
        assert batch["vis_mask"][0, index].all()  # every point is scored, visible or not
    assert batch["vis_targets"][0, ~tokens].sum() == 0


def test_the_loss_adds_the_hand_computed_bce(model, processor, video_example) -> None:
    model.add_visibility_head()
    batch = processor([video_example])
    model.eval()
    with torch.no_grad():
        with_head = model(**batch, **stage_loss_terms(model.config, 2))
        model.config.visibility_head = False
        without = model(**batch, **stage_loss_terms(model.config, 2))
        model.config.visibility_head = True
        hidden = model(**{k: v for k, v in batch.items() if k not in ("labels",)}).hidden_states
    where = torch.nonzero(batch["vis_mask"][0].flatten(1).any(-1)).flatten()  # targets of token i+1 come from h_i
    logits = model.visibility_logits(hidden[0, where - 1]).double()
    targets = batch["vis_targets"][0, where, ..., 0].double()
    p = torch.sigmoid(logits)
    bce = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p))
    tokens = int((batch["labels"][0, 1:] != -100).sum())
    expected = model.config.coord_weight * float(bce.sum()) / (bce.shape[1] * bce.shape[2]) / tokens
    assert abs(float(with_head.coord_loss - without.coord_loss) - expected) < 1e-5


def test_stage_2_teaches_the_head_which_points_are_hidden(model, processor, video_example) -> None:
    model.add_visibility_head()
    batch = processor([video_example])
    trained = setup_stage(model, 2)
    assert any(name.startswith("vis_projector") for name in trained)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            hidden = model(**{k: v for k, v in batch.items() if k != "labels"}).hidden_states[0]
        where = torch.nonzero(batch["vis_mask"][0].flatten(1).any(-1)).flatten()
        guess = model.visibility(hidden[where - 1]) >= 0.5
        model.train()
        return float((guess == batch["vis_targets"][0, where, ..., 0].bool()).float().mean())

    torch.manual_seed(0)
    for _ in range(60):
        optimiser.zero_grad()
        model(**batch, **stage_loss_terms(model.config, 2)).loss.backward()
        optimiser.step()
    assert accuracy() == 1.0  # the one hidden point of the clip (frame 0, point 0) and the visible ones


def test_answers_carry_visibility_through_torch_and_onnx(model, processor, tmp_path, video_example) -> None:
    torch.manual_seed(3)
    model.add_visibility_head()
    save_model_and_processor(tmp_path / "model", model, processor)
    export_onnx(tmp_path / "model", tmp_path / "onnx", probes=1, max_new_tokens=8)
    engine = OnnxEngine(tmp_path / "onnx")
    question = "describe the video."
    phrase_fn = lambda text: [(0, len(text))] if text else []  # noqa: E731  one phrase: the whole answer
    expected = answer_with_model(model, processor, video_example.frames, question, 6.0, max_new_tokens=8, phrase_fn=phrase_fn)
    assert expected.phrases and expected.phrases[0].visibility.shape == (4, 4)
    assert ((expected.phrases[0].visibility >= 0) & (expected.phrases[0].visibility <= 1)).all()
    from pite_ros.model.generation import generate

    answer = generate(engine.backend, [video_example.frames], [question], [6.0], max_new_tokens=8,
                      phrase_fn=phrase_fn)[0]
    assert answer.token_ids == expected.token_ids
    assert np.abs(answer.phrases[0].visibility - expected.phrases[0].visibility).max() < 1e-5
