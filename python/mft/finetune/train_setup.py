"""What `mft train` does differently for fine-tuning (the `finetune` config section).

- `finetune.method: lora`: LoRA on the model (`apply_finetune`), so only the
  adapters are trainable parameters: the optimizer and its checkpointed state
  cover only them, the base weights never change. On resume the adapter
  comes back from the checkpoint folder's adapter files (also on
  train.nan_action=rollback, `reload_adapter`).
- Checkpoint folders (`save_model_files`) stay Hugging Face model folders
  (the base weights) and, with LoRA, also hold adapter_config.json +
  adapter_model.safetensors in PEFT's layout, so PEFT loads that folder as
  an adapter unchanged.
- Loss masks (`with_loss_mask`, `inputs_labels`): when data.prefix has the
  PREFIX_mask.bin/.idx that `mft data preprocess --format sft` writes
  (and finetune.loss_mask is auto), each sample's mask window is read with
  the same sample index as its tokens, and labels whose token is not a
  target become -100 (ignored by the loss); validation batches on
  data.split's held-out documents are masked the same way.
- Packing (`finetune.packing: true`, `packed_stream`): whole conversations
  packed per row with segment ids, so none attends to another and positions
  restart per conversation (mft.data.sft_packing); validation is packed too.
"""

from __future__ import annotations

import os

import numpy as np

from mft.errors import MftError
from mft.training.loss import IGNORE_INDEX


def lora_settings(cfg):
    """LoraSettings from the config's finetune.lora section; MftError naming finetune.lora when invalid."""
    from mft.finetune.lora import LoraSettings

    return LoraSettings.from_config(cfg)


def apply_finetune(cfg, model, resume_from: str | None = None):
    """Applies LoRA for finetune.method=lora (loading the adapter on resume) and, on a vision-language
    model, freezes the parts finetune.vision_tower/projector/language_model name; returns the LoRA settings or None."""
    from mft.finetune.vlm_freeze import apply_freeze, lora_targets

    if cfg.finetune.method != "lora":
        apply_freeze(cfg, model, lora=False)
        return None
    from mft.finetune.lora import apply_lora, load_adapter_weights, read_adapter, ADAPTER_WEIGHTS

    settings = lora_settings(cfg)
    settings.target_modules = lora_targets(model, settings.target_modules)  # VLM: the language model's linears only
    apply_lora(model, settings, seed=cfg.run.seed)
    apply_freeze(cfg, model, lora=True)
    if resume_from:
        saved, tensors = read_adapter(resume_from)
        if (saved.r, saved.alpha, saved.target_modules, saved.modules_to_save) != (
                settings.r, settings.alpha, settings.target_modules, settings.modules_to_save):
            raise MftError(f"{resume_from}: its adapter has r={saved.r}, alpha={saved.alpha}, target_modules={saved.target_modules!r}, "
                           f"modules_to_save={saved.modules_to_save!r}; finetune.lora asks for r={settings.r}, alpha={settings.alpha}, "
                           f"target_modules={settings.target_modules!r}, modules_to_save={settings.modules_to_save!r}")
        load_adapter_weights(model, tensors, os.path.join(resume_from, ADAPTER_WEIGHTS))
    return settings


def reload_adapter(model, folder: str) -> None:
    """Puts a checkpoint folder's adapter back into a LoRA model (nan_action=rollback); no-op without LoRA."""
    from mft.finetune.lora import ADAPTER_WEIGHTS, load_adapter_weights, lora_layers, read_adapter

    if not lora_layers(model):
        return
    _, tensors = read_adapter(folder)
    load_adapter_weights(model, tensors, os.path.join(folder, ADAPTER_WEIGHTS))


def save_model_files(model, folder: str, base_model: str | None = None, values: dict | None = None) -> None:
    """A checkpoint's model files: the HF folder, plus the PEFT adapter when the model has LoRA layers.
    `values`: full parameter arrays gathered from tensor-parallel ranks (CausalLM.hf_state_dict)."""
    from mft.finetune.lora import lora_layers, save_adapter

    model.save_pretrained(folder, values)
    if base_model:  # a vision-language folder's processor files, so the checkpoint reads images as its base did
        import shutil

        for name in PROCESSOR_FILES:
            if os.path.isfile(os.path.join(base_model, name)) and not os.path.exists(os.path.join(folder, name)):
                shutil.copyfile(os.path.join(base_model, name), os.path.join(folder, name))
    if lora_layers(model):
        save_adapter(model, folder, base_model)


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "chat_template.jinja")


class MaskedSamples:
    """A train stream whose batches are (tokens, mask) pairs, read with one sample index."""

    def __init__(self, tokens, mask):
        self.tokens = tokens
        self.mask = mask
        self.documents = tokens.documents
        self.samples_per_epoch = tokens.samples_per_epoch

    def rank_batch(self, start: int, accum: int, micro_batch: int, dp_rank: int = 0, dp: int = 1):
        """(tokens, mask) batches of this dp rank from sample `start`, read with the same sample index."""
        return (self.tokens.rank_batch(start, accum, micro_batch, dp_rank, dp),
                self.mask.rank_batch(start, accum, micro_batch, dp_rank, dp))


def with_loss_mask(cfg, indexed, train_stream):
    """`train_stream` wrapped with its loss mask when data.prefix has one (finetune.loss_mask=auto);
    with finetune.packing, the packed-conversation stream over the same documents instead."""
    from mft.data.epoch_samples import EpochSamples
    from mft.data.sft import has_loss_mask, open_loss_mask

    from mft.data.sft_images import has_images

    use_mask = cfg.finetune.loss_mask == "auto" and has_loss_mask(cfg.data.prefix)
    if has_images(cfg.data.prefix):  # image-text SFT data: one conversation per row, images read per batch
        from mft.finetune.vlm_batches import vlm_stream

        return vlm_stream(cfg, indexed, train_stream.documents, open_loss_mask(cfg.data.prefix, indexed) if use_mask else None)
    if cfg.finetune.packing:
        return packed_stream(cfg, indexed, train_stream.documents, open_loss_mask(cfg.data.prefix, indexed) if use_mask else None)
    if not use_mask:
        return train_stream
    mask = open_loss_mask(cfg.data.prefix, indexed)
    mask_stream = EpochSamples(mask, cfg.data.seq_len, seed=cfg.run.seed, documents=train_stream.documents, name="loss mask")
    return MaskedSamples(train_stream, mask_stream)


def packed_stream(cfg, indexed, documents, mask):
    """finetune.packing: whole conversations packed per row (mft.data.sft_packing), no attention across them."""
    from mft.data.sft_packing import PackedSftSamples

    if getattr(cfg.model, "mtp_layers", 0):
        raise MftError("finetune.packing: model.mtp_layers > 0 is not supported (multi-token prediction shifts tokens "
                       "across conversation boundaries); set model.mtp_layers=0 or finetune.packing=false")
    return PackedSftSamples(indexed, cfg.data.seq_len, cfg.run.seed, mask=mask, documents=documents)


def inputs_labels(batch):
    """(inputs, labels) of a batch: tokens[..., :-1], tokens[..., 1:], with masked labels set to -100.
    A packed batch gives inputs (..., 3, seq_len) (ids, positions, segments) and its labels."""
    from mft.data.sft_packing import PackedBatch
    from mft.finetune.vlm_batches import VlmBatch

    if isinstance(batch, VlmBatch):
        return batch.inputs_labels()
    if isinstance(batch, PackedBatch):
        return batch.inputs, batch.labels
    if not isinstance(batch, tuple):
        return batch[..., :-1], batch[..., 1:]
    tokens, mask = batch
    labels = np.array(tokens[..., 1:], dtype=np.int32)
    labels[np.asarray(mask[..., 1:]) == 0] = IGNORE_INDEX
    return tokens[..., :-1], labels
