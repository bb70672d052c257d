"""Qwen2.5-VL prompt + images -> (input_ids, pixel_values, image_grid_thw), as transformers' Qwen2_5_VLProcessor.

Each `<|image_pad|>` in the text stands for one image, in order, and is
repeated t * h * w / merge_size^2 times (the image's merged features). A
prompt without placeholders gets `<|vision_start|><|image_pad|><|vision_end|>`
per image put in front.
"""

from __future__ import annotations


import numpy as np

from mft.errors import MftError
from mft.models.common.vlm import folder_tokenizer
from mft.models.qwen2_5_vl.image_processor import Qwen2VLImageProcessor

IMAGE_TOKEN = "<|image_pad|>"


class Qwen2_5_VLProcessor:
    """Text + images -> Qwen2.5-VL model inputs: each image placeholder expanded to its merged patches, pixel_values and image_grid_thw."""

    def __init__(self, tokenizer, image_processor: Qwen2VLImageProcessor, config, image_token: str = IMAGE_TOKEN):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.config = config
        self.image_token = image_token
        token_id = tokenizer.token_to_id(image_token)
        if token_id != config.image_token_id:
            raise MftError(f"tokenizer's {image_token!r} is id {token_id} but config.json's image_token_id is {config.image_token_id}")
        v = config.vision_config
        if (image_processor.patch_size, image_processor.merge_size, image_processor.temporal_patch_size) != (v.patch_size, v.spatial_merge_size, v.temporal_patch_size):
            raise MftError("image processor's patch_size/merge_size/temporal_patch_size differ from vision_config's")

    @classmethod
    def from_pretrained(cls, folder: str, config, tokenizer=None) -> "Qwen2_5_VLProcessor":
        """The processor of a model folder: its tokenizer (unless given) and image processor."""
        if tokenizer is None:
            tokenizer = folder_tokenizer(folder)
        return cls(tokenizer, Qwen2VLImageProcessor.from_pretrained(folder), config)

    def __call__(self, text: str, images=()) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        images = list(images)
        if images and self.image_token not in text:
            text = ("<|vision_start|>" + self.image_token + "<|vision_end|>") * len(images) + text
        parts = text.split(self.image_token)
        if len(parts) - 1 != len(images):
            raise MftError(f"the prompt has {len(parts) - 1} {self.image_token} placeholder(s) but {len(images)} image(s) were given")
        if not images:
            return np.asarray(self.tokenizer.encode(text), dtype=np.int64)[None, :], None, None
        pixel_values, grids = self.image_processor(images)
        merge = self.image_processor.merge_size ** 2
        expanded = parts[0]
        for grid, part in zip(grids, parts[1:]):
            expanded += self.image_token * int(np.prod(grid) // merge) + part
        ids = np.asarray(self.tokenizer.encode(expanded), dtype=np.int64)[None, :]
        return ids, pixel_values, grids

    # how an image part of a chat message is written into the rendered text (as Qwen2.5-VL's chat template does)
    chat_placeholder = "<|vision_start|>" + IMAGE_TOKEN + "<|vision_end|>"

    def expand_prompt(self, text: str, images) -> tuple[str, dict]:
        """(the text with each placeholder repeated once per merged feature of its image, the model's image
        inputs): what `mft serve` tokenizes and prefills for a chat with image parts."""
        images = list(images)
        parts = text.split(self.image_token)
        if len(parts) - 1 != len(images):
            raise MftError(f"the prompt has {len(parts) - 1} {self.image_token} placeholder(s) but {len(images)} image(s) were given")
        pixel_values, grids = self.image_processor(images)
        merge = self.image_processor.merge_size ** 2
        expanded = parts[0]
        for grid, part in zip(grids, parts[1:]):
            expanded += self.image_token * int(np.prod(grid) // merge) + part
        return expanded, {"pixel_values": pixel_values, "image_grid_thw": np.asarray(grids, np.int64)}

    def model_inputs(self, text: str, images=()) -> tuple[np.ndarray, dict]:
        """(input_ids, keyword arguments of the model's generate) for `mft generate --image`."""
        ids, pixel_values, grids = self(text, images)
        return ids, ({} if pixel_values is None else {"pixel_values": pixel_values, "image_grid_thw": grids})
