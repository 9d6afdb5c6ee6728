"""``PiteForConditionalGeneration``: a visual encoder, a causal LM and the coordinate heads.

docs/papers.md, PiTe "Architecture": the clip's frames become visual tokens in the LLM's
embedding space (``visual_encoder``: PiTe's per-frame CLS through the adapter μ, or
Grounded-VideoLLM's two streams; ``pite_ros.model.visual_encoder``); the LLM reads them and the
text; on the same last hidden state h_i, the vocabulary head gives the next token and the
``coordinate_head`` a point (x, y) (φ) and N frames × P points × (x, y) (the trajectory
projector; regressed, or read from the tower's patch tokens: ``pite_ros.model.coordinate_head``);
an optional visibility head (``vis_projector``) gives each of those points' visibility.
This module holds the composition and ``forward``; the loss terms are the caller's choice
(``coordinate_terms``, ``label_smoothing``; training's are ``stages.stage_loss_terms``).

Two pieces are callable on their own for ONNX export and the engines: ``encode_clip``
(visual encoder, and the patch tokens a soft-argmax head reads) and ``decoder_step`` (LM +
heads, with a KV cache). ``forward`` is ``encode_clip`` → splice into the embeddings →
``decoder_step`` → losses.

Checkpoints saved before the encoder and heads were submodules name their tensors
``vision_tower.*``, ``adapter.*``, ``loc_projector.*``, ``traj_projector.*``;
``checkpoint_key_renames`` maps them on load (the shipped default model is such a checkpoint).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from peft import PeftModel
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from pite_ros.model.checkpoint import load_model_dir, plain_state_dict
from pite_ros.model.config import PiteConfig
from pite_ros.model.coordinate_head import build_coordinate_head, make_projector
from pite_ros.model.losses import pite_loss
from pite_ros.model.time_embeddings import init_time_token_rows
from pite_ros.model.tokenizer import bind_tokenizer
from pite_ros.model.visual_encoder import build_visual_encoder


@dataclass
class PiteOutput(ModelOutput):
    """``loss = lm_loss + coord_loss`` (see ``pite_ros.model.losses``), when labels are given.

    ``logits`` ``(B, L, vocab)``; ``loc`` ``(B, L, 2)``; ``traj`` ``(B, L, N, P, 2)``; ``hidden_states``
    ``(B, L, d)`` (the LM's last, normalised hidden states); outputs at position i describe
    token i+1. ``patch_tokens`` ``(B, T, G², D_v)``: the clip's patches (soft-argmax read-out).
    With labels, ``loc`` and ``traj`` are None: the loss projects only the positions it reads
    (``project_where``).
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    coord_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    loc: torch.FloatTensor | None = None
    traj: torch.FloatTensor | None = None
    hidden_states: torch.FloatTensor | None = None
    patch_tokens: torch.FloatTensor | None = None
    past_key_values: Cache | None = None


class DecoderStep(NamedTuple):
    """One pass of the LM and its three heads over ``(B, L)`` new positions (``loc`` and ``traj``
    None for a soft-argmax read-out given no patches)."""

    logits: torch.Tensor  # (B, L, vocab)
    loc: torch.Tensor | None  # (B, L, 2)
    traj: torch.Tensor | None  # (B, L, N, P, 2)
    hidden: torch.Tensor  # (B, L, d)
    past_key_values: Cache | None


class PitePreTrainedModel(PreTrainedModel):
    """Hugging Face plumbing shared by PiTe models (config class, weight initialisation)."""

    config_class = PiteConfig
    config: PiteConfig
    base_model_prefix = "pite"
    main_input_name = "input_ids"
    _supports_sdpa = True


class PiteForConditionalGeneration(PitePreTrainedModel):
    """The PiTe model: ``visual_encoder``, ``language_model``, ``coordinate_head`` and, with
    ``config.visibility_head``, ``vis_projector``. The tokenizer is the processor's
    (``PiteProcessor``; ``pite_ros.model.model_dir`` loads and saves the two together). Answers:
    ``pite_ros.model.torch_generation.answer_with_model``."""

    # Tensor names of checkpoints saved before the encoder and heads were submodules -> today's.
    checkpoint_key_renames = {
        r"^vision_tower\.": "visual_encoder.vision_tower.",
        r"^adapter\.": "visual_encoder.adapter.",
        r"^loc_projector\.": "coordinate_head.loc_projector.",
        r"^traj_projector\.": "coordinate_head.traj_projector.",
    }

    def __init__(self, config: PiteConfig):
        super().__init__(config)
        self.visual_encoder = build_visual_encoder(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.coordinate_head = build_coordinate_head(config)
        if config.visibility_head:
            self.vis_projector = self.new_visibility_head()
        self.post_init()

    # -- pieces ---------------------------------------------------------------------------

    def causal_lm(self) -> PreTrainedModel:
        """The language model without peft's wrapper (LoRA layers stay inside it)."""
        if isinstance(self.language_model, PeftModel):
            return self.language_model.get_base_model()
        return self.language_model

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, d)`` input embeddings."""
        return self.causal_lm().get_input_embeddings()(input_ids)

    def encode_clip(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, 3, S, S)`` -> the visual tokens ``(B, V, d)`` and, when the coordinate head
        reads them, the tower's patch tokens ``(B, T, G², D_v)``, from one pass."""
        visual, patches = self.visual_encoder.encode(pixel_values)
        return visual, patches if self.coordinate_head.reads_patch_tokens else None

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The vision tower's patch tokens of ``(N, 3, S, S)`` images -> ``(N, G², D_v)`` (PiTe
        encoding: what stage 0 trains and the tower probe reads)."""
        return self.visual_encoder.patch_tokens(images)

    def merge_visual(
        self, input_ids: torch.Tensor, visual_embeds: torch.Tensor, visual_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Text embeddings with the ``<video>`` positions replaced by the visual tokens, in order.

        ``visual_embeds`` ``(B, V, d)``; ``visual_mask`` ``(B, V)`` marks the real ones (clips of
        fewer frames are padded). Row b must have as many ``<video>`` positions as real tokens.
        """
        embeds = self.embed_tokens(input_ids)
        slots = input_ids == self.config.video_token_id
        if visual_mask is None:
            visual_mask = torch.ones(visual_embeds.shape[:2], dtype=torch.bool, device=visual_embeds.device)
        if not torch.equal(slots.sum(1), visual_mask.sum(1).to(slots.device)):
            raise ValueError(
                f"visual tokens per row {visual_mask.sum(1).tolist()} != <video> positions per row {slots.sum(1).tolist()}"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1), visual_embeds[visual_mask].to(embeds.dtype))

    def visual_mask(self, frame_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Which visual tokens of ``encode_clip`` are real, from the frames' mask ``(B, T)`` (None: all)."""
        return self.visual_encoder.visual_mask(frame_mask)

    def project(
        self, hidden: torch.Tensor, patch_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The coordinate head on ``(B, ..., d)`` hidden states: φ's ``(B, ..., 2)`` and the
        trajectory ``(B, ..., N, P, 2)``, in [0, 1]; a soft-argmax head needs row b's clip
        patches ``patch_tokens[b]`` ``(B, T, G², D_v)``."""
        return self.coordinate_head(hidden, patch_tokens)

    def new_visibility_head(self) -> nn.Module:
        """A visibility head for this config: hidden state -> N × P logits (``config.visibility_head``)."""
        return make_projector(self.config.projector_type, self.config.hidden_size,
                              self.config.num_frames * self.config.num_points)

    def add_visibility_head(self) -> None:
        """Give a model saved without one a newly initialised visibility head (to fine-tune it)."""
        head = self.new_visibility_head()
        head.apply(self._init_weights)
        self.vis_projector = head.to(next(self.coordinate_head.parameters()).dtype)
        self.config.visibility_head = True

    def visibility_logits(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """``(B, ..., d)`` hidden states -> ``(B, ..., N, P)`` logits that each point is visible
        (None without a visibility head)."""
        if not self.config.visibility_head:
            return None
        logits = self.vis_projector(hidden.to(next(self.vis_projector.parameters()).dtype))
        return logits.unflatten(-1, (self.config.num_frames, self.config.num_points))

    def visibility(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """``visibility_logits`` as probabilities in [0, 1]."""
        logits = self.visibility_logits(hidden)
        return None if logits is None else torch.sigmoid(logits)

    def project_where(
        self, hidden: torch.Tensor, patch_tokens: torch.Tensor | None, where: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``project`` (and ``visibility_logits``) at the ``(B, L)`` positions ``where`` is True,
        zeros elsewhere, in their full shapes. The loss reads the heads at a few positions (an object
        word's tokens); projecting every position cost up to a fifth of a training step (the
        read-out's softmax over a frame's patches for each position, row and point). Each row's
        positions are packed to the front of a ``(B, M)`` block, M the most any row has, so the
        patches' keys are still computed once per clip."""
        config = self.config
        loc = hidden.new_zeros(*where.shape, 2, dtype=torch.float32)
        traj = hidden.new_zeros(*where.shape, config.num_frames, config.num_points, 2, dtype=torch.float32)
        vis = traj.new_zeros(traj.shape[:-1]) if config.visibility_head else None
        counts = where.sum(1)
        most = int(counts.max()) if where.numel() else 0
        if most == 0:
            return loc, traj, vis
        columns = where.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :most]  # (B, M)
        packed = hidden.gather(1, columns[..., None].expand(-1, -1, hidden.shape[-1]))
        packed_loc, packed_traj = self.project(packed, patch_tokens)
        valid = torch.arange(most, device=where.device) < counts[:, None]
        rows = torch.arange(where.shape[0], device=where.device)[:, None].expand_as(columns)
        index = (rows[valid], columns[valid])
        loc = loc.index_put(index, packed_loc[valid].to(loc.dtype))
        traj = traj.index_put(index, packed_traj[valid].to(traj.dtype))
        if vis is not None:
            vis = vis.index_put(index, self.visibility_logits(packed)[valid].to(vis.dtype))
        return loc, traj, vis

    def decoder_step(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool = True,
        patch_tokens: torch.Tensor | None = None,
        heads: bool = True,
    ) -> DecoderStep:
        """The LM over new positions and its three heads.

        ``inputs_embeds`` ``(B, L, d)``; ``attention_mask`` ``(B, past + L)`` (0 on padding), or
        ``(B, 1, L, L)`` bool for rows of several examples (``splice_shared``; made additive here
        so that every attention implementation reads it alike);
        ``position_ids`` ``(B, L)`` (default: from the mask, so left padding starts at 0);
        ``past_key_values``: a ``DynamicCache`` (created on the first call when ``use_cache``);
        ``patch_tokens``: the clip's (``project``); without them a soft-argmax read-out gives
        no ``loc``/``traj`` (generation projects pooled phrase states afterwards instead);
        ``heads=False``: none either way (``forward`` projects only where its loss reads).
        """
        if attention_mask.dim() == 4:
            if position_ids is None:
                raise ValueError("a (B, 1, L, L) attention mask needs the rows' position_ids")
            if attention_mask.dtype == torch.bool:
                blocked = torch.finfo(inputs_embeds.dtype).min
                attention_mask = torch.zeros(attention_mask.shape, dtype=inputs_embeds.dtype, device=inputs_embeds.device
                                             ).masked_fill(~attention_mask.to(inputs_embeds.device), blocked)
        elif position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -inputs_embeds.shape[1] :]
        lm = self.causal_lm()
        output = lm.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        hidden = output.last_hidden_state
        logits = lm.get_output_embeddings()(hidden)
        if not heads or (patch_tokens is None and self.coordinate_head.reads_patch_tokens):
            loc = traj = None
        else:
            loc, traj = self.project(hidden, patch_tokens)
        return DecoderStep(logits, loc, traj, hidden, output.past_key_values)

    # -- training / scoring ---------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        visual_embeds: torch.Tensor | None = None,
        patch_tokens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loc_targets: torch.Tensor | None = None,
        loc_mask: torch.Tensor | None = None,
        traj_targets: torch.Tensor | None = None,
        traj_mask: torch.Tensor | None = None,
        vis_targets: torch.Tensor | None = None,
        vis_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool = False,
        coordinate_terms: Collection[str] | None = None,
        label_smoothing: float = 0.0,
    ) -> PiteOutput:
        """Score a spliced batch (``PiteProcessor``'s keys); with ``labels``, the loss
        (``pite_ros.model.losses``). B rows of L positions; V visual tokens; T frames.

        - ``input_ids`` ``(B, L)``: the prompt and answer ids, ``<video>`` repeated at the
          visual tokens' positions.
        - ``attention_mask``: ``(B, L)`` (1 on real tokens; default all ones) or ``(B, 1, L, L)``
          bool for rows shared by a clip's examples (``decoder_step``).
        - ``position_ids`` ``(B, L)``: default from the mask (``decoder_step``).
        - ``pixel_values`` ``(B, T, 3, S, S)`` and ``frame_mask`` ``(B, T)`` (real frames): the
          clips, encoded here (``encode_clip``).
        - ``visual_embeds`` ``(B, V, d)`` and ``patch_tokens`` ``(B, T, G², D_v)``: an encoding
          computed before (``encode_clip``), in place of ``pixel_values``; neither: text only.
        - ``labels`` ``(B, L)``: the answer ids, -100 where no loss reads.
        - ``loc_targets`` ``(B, L, 2)`` / ``loc_mask`` ``(B, L)``: each token's point (stage-1 data).
        - ``traj_targets`` ``(B, L, N, P, 2)`` / ``traj_mask`` ``(B, L, N, P)``: each phrase
          token's trajectory and the points scored.
        - ``vis_targets`` ``(B, L, N, P, 1)`` / ``vis_mask`` ``(B, L, N, P)``: whether each point
          is visible, for the visibility head's BCE (it comes with the trajectory term).
        - ``past_key_values``, ``use_cache``: the LM's KV cache (``decoder_step``).
        - ``coordinate_terms``: which coordinate terms the loss adds, of ``"loc"`` and
          ``"traj"``, each only where its targets are given; None: every term given. The
          training code chooses them per stage (``pite_ros.model.stages.stage_loss_terms``).
        - ``label_smoothing``: of the LM's cross-entropy (stage 3: ``config.label_smoothing``).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if visual_embeds is None and pixel_values is not None:
            visual_embeds, patch_tokens = self.encode_clip(pixel_values)
        if visual_embeds is None:
            embeds = self.embed_tokens(input_ids)
        else:
            embeds = self.merge_visual(input_ids, visual_embeds, self.visual_mask(frame_mask))
        step = self.decoder_step(embeds, attention_mask, position_ids, past_key_values, use_cache, patch_tokens,
                                 heads=labels is None)
        output = PiteOutput(
            logits=step.logits, loc=step.loc, traj=step.traj, hidden_states=step.hidden,
            patch_tokens=patch_tokens, past_key_values=step.past_key_values,
        )
        if labels is not None:
            terms = {"loc", "traj"} if coordinate_terms is None else set(coordinate_terms)
            if terms - {"loc", "traj"}:
                raise ValueError(f"coordinate_terms {sorted(terms)}: expected some of 'loc', 'traj'")
            use_loc = loc_targets is not None and "loc" in terms
            use_traj = traj_targets is not None and "traj" in terms
            use_vis = use_traj and vis_targets is not None and self.config.visibility_head
            if (use_loc or use_traj) and self.coordinate_head.reads_patch_tokens and patch_tokens is None:
                raise ValueError("coordinate targets with a soft-argmax read-out need pixel_values or patch_tokens")
            read = torch.zeros_like(labels, dtype=torch.bool)
            if use_loc:
                read |= loc_mask.bool()
            if use_traj:
                read |= traj_mask.flatten(2).any(-1)
            loc, traj, vis = self.project_where(step.hidden, patch_tokens, read.roll(-1, dims=1))
            terms = pite_loss(
                step.logits,
                labels,
                coord_weight=self.config.coord_weight,
                label_smoothing=label_smoothing,
                loc=loc if use_loc else None,
                loc_targets=loc_targets if use_loc else None,
                loc_mask=loc_mask,
                traj=traj if use_traj else None,
                traj_targets=traj_targets if use_traj else None,
                traj_mask=traj_mask,
                vis_logits=vis if use_vis else None,
                vis_targets=vis_targets if use_vis else None,
                vis_mask=vis_mask,
            )
            output.loss, output.lm_loss, output.coord_loss = terms.loss, terms.lm_loss, terms.coord_loss
        return output

    # -- checkpoints ------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | Path,
        is_main_process: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        """Hugging Face's ``save_pretrained`` (same arguments; ``state_dict``, e.g. gathered from
        FSDP shards, is saved instead of the live weights), writing a plain model: every LoRA
        merged and peft's names folded (``checkpoint.plain_state_dict``), so a checkpoint loads
        without peft (the tokenizer's files are the processor's to write). The tensors keep this
        model's own names (``save_original_format`` defaults to False here: transformers would otherwise
        write some towers' tensors, e.g. VideoMAE's, under their legacy names, which ``from_pretrained``
        here does not read)."""
        kwargs.setdefault("save_original_format", False)
        super().save_pretrained(save_directory, is_main_process=is_main_process,
                                state_dict=plain_state_dict(self, state_dict), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *model_args: Any,
        dtype: torch.dtype | None = None,
        device_map: str | torch.device | None = None,
        **kwargs: Any,
    ) -> PiteForConditionalGeneration:
        """A checkpoint directory written by ``save_pretrained``, in eval mode on ``device_map``
        (one device; default the CPU) in ``dtype`` (default as saved): local and safetensors only
        (``checkpoint.load_model_dir``), so the hub's and quantisation's options are refused by name."""
        unsupported = [*(["model_args"] if model_args else []), *sorted(kwargs)]
        if unsupported or isinstance(device_map, dict) or device_map == "auto":
            raise TypeError(f"PiteForConditionalGeneration.from_pretrained: unsupported argument(s) "
                            f"{unsupported or ['device_map=' + repr(device_map)]} (local safetensors on one device only)")
        return load_model_dir(cls, pretrained_model_name_or_path, dtype=dtype, device=device_map or "cpu")


def build_model(config: PiteConfig, tokenizer: PreTrainedTokenizerBase) -> PiteForConditionalGeneration:
    """A newly initialised model for ``config`` with ``tokenizer``'s ids bound into it (the
    temporal-token rows ordinal when ``config.time_token_init`` says so); its processor is
    ``PiteProcessor(tokenizer, model.config)``."""
    model = PiteForConditionalGeneration(bind_tokenizer(config, tokenizer))
    if config.time_token_init == "ordinal":
        init_time_token_rows(model.causal_lm(), config.time_token_ids())
    return model
