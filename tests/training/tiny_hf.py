"""Tiny RANDOM-weight ``transformers`` models for the segmenter tests, saved as ``save_pretrained`` folders.

Only the plumbing is exercised (loading, pre/post-processing, prompting, propagation); random
weights say nothing about quality. Each builder writes a folder the back-ends load as they
would a real checkpoint.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import transformers

LETTERS = list(string.ascii_lowercase)
TINY_VISION = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
                   patch_size=8)


def clip_tokenizer(folder: Path) -> tuple[transformers.CLIPTokenizer, int]:
    """A CLIP BPE tokenizer over single letters ("!" first: OWL pads with id 0), written into ``folder``."""
    tokens = ["!", "<|startoftext|>", "<|endoftext|>", "<unk>"] + LETTERS + [c + "</w>" for c in LETTERS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")), len(tokens)


def tiny_text(vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def owlv2(folder: Path) -> Path:
    """An OWLv2 detector and its processor."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = clip_tokenizer(folder)
    config = transformers.Owlv2Config(text_config=tiny_text(vocab), vision_config=TINY_VISION, projection_dim=32)
    transformers.Owlv2ForObjectDetection(config).save_pretrained(folder)
    images = transformers.Owlv2ImageProcessor(size={"height": 32, "width": 32})
    transformers.Owlv2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _video_processor_config(folder: Path, side: int, mean: list[float], std: list[float]) -> None:
    """The frame settings as ``Sam3VideoProcessor`` / ``Sam2VideoProcessor.save_pretrained`` write them
    (those processors need torchvision, which this environment lacks, so the file is written here)."""
    frames = {"do_resize": True, "do_rescale": True, "do_normalize": True, "image_mean": mean, "image_std": std,
              "rescale_factor": 1 / 255, "resample": 2, "size": {"height": side, "width": side}}
    (folder / "processor_config.json").write_text(json.dumps({"video_processor": frames}))


def _objects_appear(mask_decoder: object) -> None:
    """Bias the object-score head so that random weights predict an object (else every mask is empty)."""
    import torch

    with torch.no_grad():
        mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)


def sam3_video(folder: Path) -> Path:
    """A SAM 3 video model (56 px input, 4x4 tokens) that detects anything (thresholds 0, no hotstart), at
    most 2 objects at once (else every frame's detections pile up as new objects and tracking slows)."""
    folder.mkdir(parents=True, exist_ok=True)
    side, patch, hidden = 56, 14, 128  # hidden > the tracker's memory width (64), as in the real model
    grid = side // patch
    vision = dict(backbone_config=dict(model_type="sam3_vit_model", hidden_size=hidden, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, image_size=side, patch_size=patch,
                                       window_size=2, global_attn_indexes=[1], pretrain_image_size=side),
                  fpn_hidden_size=hidden, backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2])
    tokenizer, vocab = clip_tokenizer(folder)
    layers = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=64)
    detector = transformers.Sam3Config(
        vision_config=vision,
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=64, projection_dim=hidden,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, bos_token_id=1,
                         eos_token_id=2, pad_token_id=2),
        geometry_encoder_config=layers, detr_encoder_config=layers,
        detr_decoder_config=dict(layers, num_queries=4),
        mask_decoder_config=dict(hidden_size=hidden, num_upsampling_stages=2, num_attention_heads=2),
    )
    tracker = dict(
        model_type="sam3_tracker_video", vision_config=vision, image_size=side,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=side, patch_size=patch, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64, num_maskmem=3,
    )
    config = transformers.Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * grid,
                                          score_threshold_detection=0.0, new_det_thresh=0.0, hotstart_delay=0,
                                          max_num_objects=2)
    model = transformers.Sam3VideoModel(config)
    _objects_appear(model.tracker_model.mask_decoder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _video_processor_config(folder, side, [0.5] * 3, [0.5] * 3)
    return folder


def sam2_video(folder: Path) -> Path:
    """A SAM 2 video model (64 px input, a 4-stage Hiera of one or two blocks per stage)."""
    folder.mkdir(parents=True, exist_ok=True)
    side, hidden = 64, 128
    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=16, image_size=[side, side],
                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                 num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[8, 4, 4, 2],
                 global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2])
    config = transformers.Sam2VideoConfig(
        vision_config=dict(backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16],
                           backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=hidden),
        image_size=side,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=side, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        num_maskmem=3, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[4, 4],
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64,
    )
    model = transformers.Sam2VideoModel(config)
    _objects_appear(model.mask_decoder)
    model.save_pretrained(folder)
    _video_processor_config(folder, side, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return folder
