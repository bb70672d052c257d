"""CLIP image preprocessing, as transformers' CLIPImageProcessor (Pillow backend) does it.

Steps, each optional per preprocessor_config.json: convert to RGB (alpha
composited onto white), resize so the shortest edge is `size.shortest_edge`
(the long edge is int(shortest * long / short)), or to `size.height x
size.width`, with Pillow's filter `resample` (3 = bicubic); center crop to
`crop_size` (top = (H - h) // 2, zero padding when the image is smaller);
rescale (uint8 * rescale_factor in float64, then float32); normalize
((x - mean) / std in float32). Output: (C, H, W) float32 per image.

Pure numpy + Pillow: no MindSpore, so data pipelines can use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from mft.errors import MftError
from mft.models.common.vlm import read_image_processor_dict

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_image(path: str):
    """Open an image file with Pillow, fully decoded; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise MftError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MftError(f"{path}: cannot decode image: {e}") from None


def to_rgb(image):
    """The image in RGB; a transparent image is composited over white first, as transformers does."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass
class ClipImageProcessor:
    do_resize: bool = True
    size: dict = field(default_factory=lambda: {"shortest_edge": 224})
    resample: int = 3  # PIL.Image.BICUBIC
    do_center_crop: bool = True
    crop_size: dict = field(default_factory=lambda: {"height": 224, "width": 224})
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD
    do_convert_rgb: bool = True

    KNOWN_EXTRA = frozenset({"image_processor_type", "processor_class", "feature_extractor_type", "default_to_square", "data_format",
                             "input_data_format", "return_tensors", "device", "disable_grouping", "image_seq_length", "backend"})

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "ClipImageProcessor":
        """The processor of a preprocessor_config.json dict; unknown keys are an MftError naming `source`."""
        names = {f for f in cls.__dataclass_fields__}
        unknown = sorted(k for k in d if k not in names and k not in cls.KNOWN_EXTRA)
        if unknown:
            raise MftError(f"{source}: unknown image processor key {unknown[0]!r} (mft implements CLIPImageProcessor: {', '.join(sorted(names))})")
        if d.get("default_to_square"):
            raise MftError(f"{source}: default_to_square=true is not supported (CLIP resizes the shortest edge)")
        kwargs = {k: d[k] for k in names if k in d and d[k] is not None}
        for key in ("size", "crop_size"):
            if isinstance(kwargs.get(key), int):  # the older spelling: one number
                kwargs[key] = {"shortest_edge": kwargs[key]} if key == "size" else {"height": kwargs[key], "width": kwargs[key]}
        proc = cls(**kwargs)
        proc.check(source)
        return proc

    @classmethod
    def from_pretrained(cls, folder: str) -> "ClipImageProcessor":
        """The processor of a model folder's preprocessor_config.json (or processor_config.json)."""
        d, path = read_image_processor_dict(folder)
        return cls.from_dict(d, path)

    def check(self, source: str) -> None:
        """Checks size and crop_size are shapes this processor implements; MftError naming `source` otherwise."""
        size = self.size
        if not (isinstance(size, dict) and (set(size) == {"shortest_edge"} or set(size) == {"height", "width"})):
            raise MftError(f"{source}: size={size!r} is not supported: expected {{'shortest_edge': N}} or {{'height': H, 'width': W}}")
        if not (isinstance(self.crop_size, dict) and set(self.crop_size) == {"height", "width"}):
            raise MftError(f"{source}: crop_size={self.crop_size!r} is not supported: expected {{'height': H, 'width': W}}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise MftError(f"{source}: image_mean/image_std need 3 values (RGB)")

    # ---- steps ------------------------------------------------------------------
    def resize(self, image):
        """The image resized as the config's size says (shortest edge or height x width), bicubic like transformers."""
        w, h = image.size
        if "shortest_edge" in self.size:
            target = self.size["shortest_edge"]
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = target, int(target * long / short)
            new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
        else:
            new_h, new_w = self.size["height"], self.size["width"]
        return image.resize((new_w, new_h), resample=self.resample)

    def center_crop(self, chw: np.ndarray) -> np.ndarray:
        """The centre crop_size window of a (C, H, W) array (padded with zeros where the image is smaller)."""
        ch, cw = int(self.crop_size["height"]), int(self.crop_size["width"])
        _, h, w = chw.shape
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
            return chw[:, top:top + ch, left:left + cw]
        nh, nw = max(ch, h), max(cw, w)
        padded = np.zeros(chw.shape[:-2] + (nh, nw), dtype=chw.dtype)
        tp, lp = -(-(nh - h) // 2), -(-(nw - w) // 2)
        padded[:, tp:tp + h, lp:lp + w] = chw
        top, left = (nh - ch) // 2, (nw - cw) // 2  # as transformers: crop the padded image again
        return padded[:, top:top + ch, left:left + cw]

    def preprocess_one(self, image) -> np.ndarray:
        """One image (or path) -> (3, H, W) float32: RGB, resized, cropped, rescaled and normalized."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(os.fspath(image))
        if self.do_convert_rgb:
            image = to_rgb(image)
        if self.do_resize:
            image = self.resize(image)
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if self.do_center_crop:
            chw = self.center_crop(chw)
        x = chw
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
            mean = np.asarray(self.image_mean, dtype=x.dtype).reshape(-1, 1, 1)
            std = np.asarray(self.image_std, dtype=x.dtype).reshape(-1, 1, 1)
            x = (x - mean) / std
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images) -> np.ndarray:
        """Pillow images or file paths -> pixel_values (N, C, H, W) float32."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise MftError("image processor: no images given")
        return np.stack([self.preprocess_one(im) for im in images])
