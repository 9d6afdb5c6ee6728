"""Model back-ends: tiny RANDOM models and processors saved to a temp folder, loaded offline.

Only the plumbing is checked (loading with local_files_only, pre/post-processing, masks of
the frames' shape and dtype); random weights say nothing about quality.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from tiny_hf import LETTERS, TINY_VISION, clip_tokenizer, owlv2, tiny_text  # noqa: E402

from training.annotate.segmenters import build_segmenter  # noqa: E402

FRAMES = np.random.default_rng(0).integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)  # random weights, but the same ones every run
    root = tmp_path_factory.mktemp("hf")
    folders = {name: root / name for name in ("clipseg", "owlv2", "sam", "gdino")}
    for folder in folders.values():
        folder.mkdir()

    tokenizer, vocab = clip_tokenizer(folders["clipseg"])
    config = transformers.CLIPSegConfig(text_config=tiny_text(vocab), vision_config=TINY_VISION, projection_dim=32,
                                        extract_layers=[1], reduce_dim=16, decoder_num_attention_heads=2,
                                        decoder_intermediate_size=32)
    transformers.CLIPSegForImageSegmentation(config).save_pretrained(folders["clipseg"])
    images = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    transformers.CLIPSegProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folders["clipseg"])

    owlv2(folders["owlv2"])

    config = transformers.SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
                           output_channels=16, mlp_dim=64, window_size=2, global_attn_indexes=[1], num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                 iou_head_hidden_dim=16),
    )
    transformers.SamModel(config).save_pretrained(folders["sam"])
    images = transformers.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                            mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    transformers.SamProcessor(image_processor=images).save_pretrained(folders["sam"])

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "the", "red", "circle"] + LETTERS
    (folders["gdino"] / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizer(str(folders["gdino"] / "vocab.txt"))
    config = transformers.GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=2, image_size=64, out_features=["stage2", "stage3", "stage4"]),
        use_timm_backbone=False, use_pretrained_backbone=False,
        text_config=dict(model_type="bert", vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32,
    )
    transformers.GroundingDinoForObjectDetection(config).save_pretrained(folders["gdino"])
    images = transformers.GroundingDinoImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    transformers.GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folders["gdino"])
    return folders


def _check(masks: np.ndarray | None) -> None:
    assert masks is not None
    assert masks.shape == FRAMES.shape[:3] and masks.dtype == bool


def test_clipseg(models: dict[str, Path]) -> None:
    segmenter = build_segmenter("clipseg", model_dir=str(models["clipseg"]), threshold=0.0)
    assert segmenter.all_frames is False
    masks = segmenter.segment(FRAMES, "a red circle")
    _check(masks)
    assert masks.all()  # every probability exceeds 0
    strict = build_segmenter("clipseg", model_dir=str(models["clipseg"]), threshold=1.0)
    assert strict.segment(FRAMES, "a red circle") is None


def test_owlv2_sam(models: dict[str, Path]) -> None:
    segmenter = build_segmenter("owlv2-sam", model_dir=str(models["owlv2"]), sam_dir=str(models["sam"]), threshold=0.0)
    _check(segmenter.segment(FRAMES, "a red circle"))


def test_grounding_dino_sam(models: dict[str, Path]) -> None:
    segmenter = build_segmenter("grounding-dino-sam", model_dir=str(models["gdino"]), sam_dir=str(models["sam"]),
                                threshold=0.0)
    _check(segmenter.segment(FRAMES, "a red circle"))


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent does not exist"):
        build_segmenter("clipseg", model_dir=str(tmp_path / "absent"))


def test_a_hub_id_that_cannot_be_had_is_named(tmp_path: Path) -> None:
    """Offline (HF_HUB_OFFLINE=1) with an empty cache: one error naming the id, no traceback from the hub."""
    code = ("from training.annotate.segmenters import build_segmenter\n"
            "try:\n    build_segmenter('sam3-video', model_dir='nobody/no-such-model')\n"
            "except FileNotFoundError as error:\n    print(error)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "Hub id nobody/no-such-model (HF_HUB_OFFLINE is set and it is not in the local Hub cache)" in result.stdout, result.stderr[-2000:]
