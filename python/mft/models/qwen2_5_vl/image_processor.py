"""Qwen2-VL / Qwen2.5-VL image preprocessing, as transformers' Qwen2VLImageProcessor (Pillow backend).

Per image: RGB (alpha onto white); `smart_resize` to a size whose sides are
multiples of patch_size * merge_size with the pixel count within
[size.shortest_edge, size.longest_edge] (min/max pixels), keeping the aspect
ratio as nearly as possible, resized with Pillow's `resample` (3 = bicubic);
rescale (float64 then float32) and normalize (float32); then patchify: the
(C, H, W) image becomes (h * w, C * temporal_patch_size * p * p) rows in
merge-block order (each row repeats the still image over the temporal
patch), and its grid (1, h, w) goes into `image_grid_thw`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from mft.errors import MftError
from mft.models.common.vlm import read_image_processor_dict
from mft.models.llava.image_processor import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, load_image, to_rgb


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor` with the pixel count kept within [min_pixels, max_pixels], as transformers computes it."""
    if max(height, width) / min(height, width) > 200:
        raise MftError(f"image of {height}x{width}: aspect ratio above 200 is not supported")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass
class Qwen2VLImageProcessor:
    do_resize: bool = True
    size: dict = field(default_factory=lambda: {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280})
    resample: int = 3
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD
    do_convert_rgb: bool = True
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2

    KNOWN_EXTRA = frozenset({"image_processor_type", "processor_class", "min_pixels", "max_pixels", "data_format", "input_data_format",
                             "return_tensors", "device", "disable_grouping", "default_to_square", "backend"})

    @classmethod
    def from_pretrained(cls, folder: str) -> "Qwen2VLImageProcessor":
        """The processor of a model folder's preprocessor_config.json (or processor_config.json)."""
        d, path = read_image_processor_dict(folder)
        names = set(cls.__dataclass_fields__)
        unknown = sorted(k for k in d if k not in names and k not in cls.KNOWN_EXTRA)
        if unknown:
            raise MftError(f"{path}: unknown image processor key {unknown[0]!r} (mft implements Qwen2VLImageProcessor)")
        kwargs = {k: d[k] for k in names if k in d and d[k] is not None}
        size = dict(kwargs.get("size") or cls().size)
        if d.get("min_pixels") is not None:
            size["shortest_edge"] = d["min_pixels"]
        if d.get("max_pixels") is not None:
            size["longest_edge"] = d["max_pixels"]
        if set(size) != {"shortest_edge", "longest_edge"}:
            raise MftError(f"{path}: size={size!r} is not supported: expected shortest_edge (min pixels) and longest_edge (max pixels)")
        kwargs["size"] = size
        return cls(**kwargs)

    def preprocess_one(self, image) -> tuple[np.ndarray, tuple[int, int, int]]:
        """One image (or path) -> (its flattened patches, its (t, h, w) grid): resized, rescaled, normalized, cut into patches."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(os.fspath(image))
        if self.do_convert_rgb:
            image = to_rgb(image)
        if self.do_resize:
            w, h = image.size
            nh, nw = smart_resize(h, w, self.patch_size * self.merge_size, self.size["shortest_edge"], self.size["longest_edge"])
            image = image.resize((nw, nh), resample=self.resample)
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        x = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
            x = (x - np.asarray(self.image_mean, x.dtype).reshape(-1, 1, 1)) / np.asarray(self.image_std, x.dtype).reshape(-1, 1, 1)
        x = np.asarray(x, dtype=np.float32)
        c, height, width = x.shape
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        if height % (p * m) or width % (p * m):
            raise MftError(f"image of {height}x{width} after resizing is not a multiple of patch_size * merge_size = {p * m}")
        gh, gw = height // p, width // p
        patches = x.reshape(c, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)
        patches = np.broadcast_to(patches[:, :, :, :, :, None], patches.shape[:5] + (tp,) + patches.shape[5:])
        return np.ascontiguousarray(patches.reshape(gh * gw, c * tp * p * p)), (1, gh, gw)

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Pillow images or paths -> pixel_values (sum of patches, C*T*p*p) float32, image_grid_thw (N, 3) int64."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise MftError("image processor: no images given")
        done = [self.preprocess_one(im) for im in images]
        return np.concatenate([d[0] for d in done]), np.asarray([d[1] for d in done], dtype=np.int64)
