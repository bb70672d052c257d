"""Image-text fine-tuning batches for `mft train` (data.prefix with PREFIX_images.jsonl).

`mft data preprocess --format sft` stores one image token per image
(mft.data.sft_images). Here, at training time, each sample is one whole
conversation (its images can't be split across rows):

- the conversation's images are opened with Pillow (lazily: only when the
  sample is drawn; a missing or corrupt file is an MftError naming the
  record's file:line and the image) and run through the model's own image
  processor (`mft.models.auto.load_processor`);
- each image token is repeated once per image feature (a fixed count for
  LLaVA; t*h*w / merge^2 for Qwen2.5-VL), with mask 0: image tokens are
  never targets;
- the row is padded (pad id, mask 0) to data.seq_len + 1; a conversation
  whose image tokens do not fit is an error naming its file:line, one whose
  text does not fit loses its right end.

Conversations are drawn in a seeded permutation per epoch over the train
documents, so sample i depends only on the data, seed and i (resume-safe).

The model is called as `model(input_ids, pixel_values=..., ...)`; the
train step only passes ids and labels, so `VlmLossModel` wraps the model
and finds each micro-batch's image inputs by its ids (registered when the
batch is built). The step runs in PyNative mode (run.mode: pynative): the
image-token scatter reads the ids on the host.
"""

from __future__ import annotations

import numpy as np
from mindspore import nn

from mft.errors import MftError


class VlmBatch:
    """(accum, micro_batch / dp, seq_len + 1) ids and masks, plus per micro-batch image inputs."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, images: list[dict]):
        self.ids, self.mask, self.images = ids, mask, images

    def inputs_labels(self):
        """(inputs, labels): ids without the last token, and the next tokens with non-target labels set to -100."""
        from mft.training.loss import IGNORE_INDEX

        labels = np.array(self.ids[..., 1:], dtype=np.int32)
        labels[self.mask[..., 1:] == 0] = IGNORE_INDEX
        return np.ascontiguousarray(self.ids[..., :-1]), labels


def load_images(paths: list[str], source: str):
    """The images at `paths` read with Pillow (fully loaded, files closed); MftError naming `source` and the file otherwise."""
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                out.append(im.copy())
        except FileNotFoundError:
            raise MftError(f"{source}: image {p} not found (the data was preprocessed when it existed)") from None
        except Exception as e:  # Pillow raises many kinds for a damaged file
            raise MftError(f"{source}: image {p} cannot be read: {type(e).__name__}: {e}") from None
    return out


def process_images(processor, images) -> tuple[dict, list[int]]:
    """(model keyword inputs, feature tokens per image) from the family's image processor."""
    out = processor.image_processor(images)
    if isinstance(out, tuple):  # Qwen2-VL style: patch rows + (t, h, w) per image
        pixel_values, grids = out
        merge = processor.image_processor.merge_size ** 2
        return ({"pixel_values": np.asarray(pixel_values, np.float32), "image_grid_thw": np.asarray(grids, np.int64)},
                [int(np.prod(g)) // merge for g in grids])
    return {"pixel_values": np.asarray(out, np.float32)}, [int(processor.config.image_tokens_per_image)] * len(images)


def image_token_id(config) -> int:
    """The model config's image placeholder token id (image_token_index or image_token_id)."""
    for key in ("image_token_index", "image_token_id"):
        if getattr(config, key, None) is not None:
            return int(getattr(config, key))
    raise MftError(f"{type(config).__name__} names no image token id")


class VlmSamples:
    """The train stream of an image-text SFT dataset (see the module doc)."""

    def __init__(self, tokens, mask, entries: list[dict], documents, seq_len: int, seed: int, processor, pad_id: int = 0):
        self.tokens, self.mask, self.entries = tokens, mask, entries
        self.documents = np.arange(len(tokens), dtype=np.int64) if documents is None else np.asarray(documents, dtype=np.int64)
        if len(self.documents) == 0:
            raise MftError(f"{tokens.prefix}: no documents to train on")
        self.samples_per_epoch = len(self.documents)
        self.seq_len, self.seed = seq_len, seed
        self.processor = processor
        self.image_id = image_token_id(processor.config)
        self.pad_id = pad_id
        self.model = None  # VlmLossModel receiving each micro-batch's image inputs
        self._orders: dict[int, np.ndarray] = {}

    def bind(self, loss_model: "VlmLossModel") -> None:
        """Gives the stream the loss model whose batches it registers (VlmLossModel.register)."""
        self.model = loss_model

    def document_of(self, sample: int) -> int:
        """The document behind sample index `sample`: documents are visited in an order seeded by (seed, epoch)."""
        epoch, i = divmod(sample, self.samples_per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.documents)}
        return int(self._orders[epoch][i])

    def row(self, doc: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        """(ids, mask) of one conversation with image tokens not yet expanded, its image paths and source."""
        entry = self.entries[doc]
        ids = np.asarray(self.tokens[doc], dtype=np.int64)
        mask = np.asarray(self.mask[doc], dtype=np.uint8)
        n = int((ids == self.image_id).sum())
        if n != len(entry["images"]):
            raise MftError(f"{entry['source']}: {n} image tokens (id {self.image_id}, the model's) but {len(entry['images'])} image(s); "
                           "preprocess with --image-token set to the model's image placeholder token")
        return ids, mask, entry["images"], entry["source"]

    def sample(self, doc: int) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """One padded (seq_len + 1) row: ids, mask, and its images' model inputs (None without images)."""
        ids, mask, paths, source = self.row(doc)
        inputs = None
        reps = np.ones(len(ids), np.int64)
        if paths:
            inputs, counts = process_images(self.processor, load_images(paths, source))
            reps[ids == self.image_id] = counts
        ids, mask = np.repeat(ids, reps), np.repeat(mask, reps)
        width = self.seq_len + 1
        if len(ids) > width:
            last_image = np.nonzero(ids == self.image_id)[0]
            if len(last_image) and last_image[-1] >= width:
                raise MftError(f"{source}: {len(ids)} tokens with its {len(paths)} image(s) expanded to {int(reps.sum() - len(reps) + len(paths))} "
                               f"image tokens; they do not fit data.seq_len={self.seq_len} (raise data.seq_len)")
            ids, mask = ids[:width], mask[:width]
        pad = width - len(ids)
        return (np.concatenate([ids, np.full(pad, self.pad_id, np.int64)]).astype(np.int32),
                np.concatenate([mask, np.zeros(pad, np.uint8)]), inputs)

    def rank_batch(self, start: int, accum: int, micro_batch: int, dp_rank: int = 0, dp: int = 1) -> VlmBatch:
        """This dp rank's part of the micro-batches from sample `start`: ids, loss mask and processed images per conversation."""
        per = micro_batch // dp
        ids = np.zeros((accum, per, self.seq_len + 1), np.int32)
        mask = np.zeros((accum, per, self.seq_len + 1), np.uint8)
        images = []
        for a in range(accum):
            parts = []
            for j in range(per):
                s = start + a * micro_batch + dp_rank * per + j
                ids[a, j], mask[a, j], inputs = self.sample(self.document_of(s))
                if inputs is not None:
                    parts.append(inputs)
            images.append({k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]} if parts else {})
        batch = VlmBatch(ids, mask, images)
        if self.model is not None:
            self.model.register(batch)
        return batch


class VlmLossModel(nn.Cell):
    """`model(input_ids, **image inputs)` with the image inputs found by the micro-batch's ids."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)  # parameter names stay the model's own
        self.model = model
        self.config = model.config
        self._inputs: dict[bytes, dict] = {}

    def register(self, batch: VlmBatch) -> None:
        """Remembers the batch's image inputs by their input ids, so construct() finds them when TrainStep calls it."""
        inputs, _ = batch.inputs_labels()
        self._inputs = {np.ascontiguousarray(inputs[a], np.int32).tobytes(): batch.images[a] for a in range(len(batch.images))}

    def construct(self, input_ids):
        import mindspore as ms

        key = np.ascontiguousarray(input_ids.asnumpy(), np.int32).tobytes()
        if key not in self._inputs:
            raise MftError("VlmLossModel: a micro-batch arrived whose images were never registered")
        kwargs = {k: (ms.Tensor(v) if k == "pixel_values" else v) for k, v in self._inputs[key].items()}
        return self.model(input_ids, **kwargs)


def vlm_stream(cfg, indexed, documents, mask):
    """The train stream of an image-text dataset; checks what the trainer needs for it."""
    from mft.data.sft_images import images_path, read_sidecar
    from mft.models import checkpoint_io
    from mft.models.auto import family_for_config, load_processor

    if cfg.run.mode == "graph":
        raise MftError(f"run.mode=graph: {images_path(cfg.data.prefix)} makes this an image-text run, whose step runs in "
                       "PyNative mode (the image tokens are placed on the host); set run.mode=pynative")
    if cfg.monitor.mfu:
        raise MftError("monitor.mfu: mft plan's FLOP count does not cover vision-language models yet; set monitor.mfu=false")
    if cfg.finetune.packing:
        raise MftError("finetune.packing: not supported for image-text data (one conversation per row); set finetune.packing=false")
    if mask is None:
        raise MftError(f"{cfg.data.prefix}: image-text data needs its loss mask (finetune.loss_mask=auto and PREFIX_mask.bin/.idx)")
    folder = cfg.model.pretrained
    if not folder:
        raise MftError("model.pretrained: image-text fine-tuning starts from a vision-language model folder (its image processor and vision tower)")
    raw = checkpoint_io.read_config(folder)
    family = family_for_config(raw, f"{folder}/config.json")
    if not hasattr(family, "PROCESSOR_CLASS"):
        raise MftError(f"model.pretrained {folder}: a {raw.get('model_type')} model reads no images, but {images_path(cfg.data.prefix)} lists images")
    config = family.CONFIG_CLASS.from_hf_dict(raw, source=f"{folder}/config.json")
    processor = load_processor(folder, config)
    pad = getattr(config, "pad_token_id", None)
    entries = read_sidecar(cfg.data.prefix, len(indexed))
    return VlmSamples(indexed, mask, entries, documents, cfg.data.seq_len, cfg.run.seed, processor, 0 if pad is None else int(pad))


def train_model(model, dataset):
    """The model the train step differentiates: wrapped for an image-text stream, else the model itself."""
    if not isinstance(dataset, VlmSamples):
        return model
    wrapper = VlmLossModel(model)
    dataset.bind(wrapper)
    return wrapper
