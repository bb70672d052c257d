"""LLaVA prompt + images -> (input_ids, pixel_values), as transformers' LlavaProcessor.

Each image placeholder in the text (`<image>`, or processor_config.json's
`image_token`) stands for one image, in order; it is repeated once per image
feature (patches, plus the class token with vision_feature_select_strategy
'full') before the text is tokenized, so the model finds exactly one image
token per feature.
"""

from __future__ import annotations

import os

import numpy as np

from mft.errors import MftError
from mft.json_files import read_json_object
from mft.models.common.vlm import folder_tokenizer
from mft.models.llava.image_processor import ClipImageProcessor

DEFAULT_IMAGE_TOKEN = "<image>"


class LlavaProcessor:
    """Text + images -> LLaVA model inputs: the image placeholder expanded to one token per image feature."""

    def __init__(self, tokenizer, image_processor: ClipImageProcessor, config, image_token: str = DEFAULT_IMAGE_TOKEN):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.config = config
        self.image_token = image_token
        token_id = tokenizer.token_to_id(image_token)
        if token_id is None:
            raise MftError(f"tokenizer has no token {image_token!r} (the image placeholder)")
        if token_id != config.image_token_index:
            raise MftError(f"tokenizer's {image_token!r} is id {token_id} but config.json's image_token_index is {config.image_token_index}")
        crop = image_processor.crop_size
        size = config.vision_config.image_size
        if image_processor.do_center_crop and (crop["height"], crop["width"]) != (size, size):
            raise MftError(f"image processor crops to {crop['height']}x{crop['width']} but the vision tower takes {size}x{size} images")

    @classmethod
    def from_pretrained(cls, folder: str, config, tokenizer=None) -> "LlavaProcessor":
        """The processor of a model folder: its tokenizer (unless given) and image processor."""
        if tokenizer is None:
            tokenizer = folder_tokenizer(folder)
        image_token = DEFAULT_IMAGE_TOKEN
        proc_path = os.path.join(folder, "processor_config.json")
        if os.path.isfile(proc_path):
            image_token = read_json_object(proc_path).get("image_token", DEFAULT_IMAGE_TOKEN)
        return cls(tokenizer, ClipImageProcessor.from_pretrained(folder), config, image_token)

    def expand_prompt(self, text: str, images) -> tuple[str, dict]:
        """(the text with each placeholder repeated per image feature, the model's image inputs):
        what `mft serve` tokenizes and prefills for a chat with image parts."""
        images = list(images)
        expanded = self.expand(text, len(images))
        return expanded, {"pixel_values": np.ascontiguousarray(self.image_processor(images), np.float32)}

    def expand(self, text: str, num_images: int) -> str:
        """The text with each image placeholder repeated once per image feature; MftError when placeholders and images differ in number."""
        found = text.count(self.image_token)
        if found != num_images:
            raise MftError(f"the prompt has {found} {self.image_token} placeholder(s) but {num_images} image(s) were given")
        return text.replace(self.image_token, self.image_token * self.config.image_tokens_per_image)

    def __call__(self, text: str, images=()) -> tuple[np.ndarray, np.ndarray | None]:
        """-> input_ids (1, S) int64 and pixel_values (num_images, C, H, W) float32 (None without images).

        `images`: Pillow images or file paths. A prompt without placeholders
        gets them prepended, one per image on its own line (LLaVA's habit).
        """
        images = list(images)
        if images and self.image_token not in text:
            text = (self.image_token + "\n") * len(images) + text
        expanded = self.expand(text, len(images))
        ids = np.asarray(self.tokenizer.encode(expanded), dtype=np.int64)[None, :]
        pixel_values = self.image_processor(images) if images else None
        return ids, pixel_values

    def model_inputs(self, text: str, images=()) -> tuple[np.ndarray, dict]:
        """(input_ids, keyword arguments of the model's generate) for `mft generate --image`."""
        ids, pixel_values = self(text, images)
        return ids, ({} if pixel_values is None else {"pixel_values": pixel_values})
