"""What the vision-language families (LLaVA, Qwen2.5-VL) share around their image tokens.

- `TextConfigView`: a VLM config's inference-facing values (vocab_size, hidden_size, the bos/eos/pad
  ids) read from its `text_config`, so generation and serving read any model config alike.
- `with_text_overrides(config, overrides)`: runtime switches (`from_config(..., fused_attention=...)`)
  applied to the text_config they belong to.
- `read_image_processor_dict(folder)`: the image processor's settings of a model folder
  (preprocessor_config.json, or processor_config.json's `image_processor` object).
- `folder_tokenizer(folder)`: a model folder's tokenizer.json, which a processor needs to encode prompts.
- `image_token_mask(...)`: where a prompt's image tokens are; a prompt with image tokens and no images
  is refused.
- `place_image_features(embeds, is_image, feats)`: the token embeddings with the image-token positions
  taking the image features in prompt order (one gather from [text embeddings; image features]).

MindSpore is imported only by `place_image_features`: configs and processors stay light.
"""

from __future__ import annotations

import os

import numpy as np

from mft.errors import MftError
from mft.json_files import read_json_object

IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class TextConfigView:
    """Mixin of a VLM config (a dataclass with a `text_config`): the language model's values as its own."""

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def eos_token_id(self):
        return self.text_config.eos_token_id

    @property
    def bos_token_id(self):
        return self.text_config.bos_token_id

    @property
    def pad_token_id(self):
        return self.text_config.pad_token_id


def with_text_overrides(config, overrides: dict):
    """`config` with `overrides` (runtime switches: fused kernels, ...) applied to its text_config, which
    they belong to; `config` itself when there are none."""
    if not overrides:
        return config
    import dataclasses

    return dataclasses.replace(config, text_config=dataclasses.replace(config.text_config, **overrides))


def read_image_processor_dict(folder: str) -> tuple[dict, str]:
    """(the image processor's settings, the file they came from) of a model folder: preprocessor_config.json,
    else processor_config.json's `image_processor` object; MftError naming the file or the folder otherwise."""
    for name in IMAGE_PROCESSOR_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        d = read_json_object(path)
        if name == "processor_config.json":
            if not isinstance(d.get("image_processor"), dict):
                continue
            d = d["image_processor"]
        return d, path
    raise MftError(f"{folder}: no preprocessor_config.json (the image processor's settings) in this model folder")


def folder_tokenizer(folder: str):
    """The Tokenizer of a model folder's tokenizer.json; MftError naming the folder when it has none."""
    from mft.tokenizer import Tokenizer

    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise MftError(f"{folder}: no tokenizer.json in this model folder (needed to encode the prompt)")
    return Tokenizer.from_file(path)


def image_token_mask(family: str, ids: np.ndarray, token_id: int, has_images: bool) -> tuple[np.ndarray, int]:
    """(ids == token_id, how many image tokens): MftError naming `family` when the prompt holds image
    tokens but no images were given."""
    is_image = np.asarray(ids) == token_id
    n_tokens = int(is_image.sum())
    if n_tokens and not has_images:
        raise MftError(f"{family}: the prompt holds {n_tokens} image tokens (id {token_id}) but no images were given")
    return is_image, n_tokens


def place_image_features(embeds, is_image: np.ndarray, feats):
    """Token embeddings (B, S, hidden) with image token k taking feature row k of `feats` (n_image_tokens,
    hidden), in prompt order; the caller has checked there is one feature row per image token."""
    import mindspore as ms
    from mindspore import mint, ops

    b, s = is_image.shape
    hidden = embeds.shape[-1]
    n_tokens = int(is_image.sum())
    index = np.arange(b * s, dtype=np.int32)
    index[is_image.reshape(-1)] = b * s + np.arange(n_tokens, dtype=np.int32)
    table = mint.cat([embeds.reshape(b * s, hidden), feats.astype(embeds.dtype)], dim=0)
    return ops.gather(table, ms.Tensor(index), 0).reshape(b, s, hidden)
