"""Images in OpenAI chat requests for `mft serve` on a vision-language model.

A message's content may hold `{"type": "image_url", "image_url": {"url": U}}`
parts (or `"image_url": U`). U is a `data:image/...;base64,...` URL or a
local file (an absolute path or `file://` URL, read with the server's
permissions). http(s) URLs are refused: the server has no network access.
Each image part becomes the processor's image placeholder in the message
text, so the chat template places it; after rendering, each placeholder is
expanded to the model's feature tokens and the images are processed as
`mft generate --image` does.

`ImageInputs` carries a request's model inputs and a digest of its pixels:
image tokens share one id, so the prefix cache keys a request's blocks on
that digest as well as the token ids (engine/scheduler `cache_key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import numpy as np

from mft.serving.sampling import ParamError


@dataclass
class ImageInputs:
    kwargs: dict  # the model's image inputs (pixel_values, ...), numpy
    digest: bytes  # sha256 of every image input: part of the prefix-cache key
    count: int


def has_image_parts(body: dict) -> bool:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    return any(isinstance(m, dict) and isinstance(m.get("content"), list)
               and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"]) for m in messages)


def _open(data: bytes, where: str):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except Exception as e:  # Pillow raises many kinds for bad bytes
        raise ParamError(where, f"{where}: not a readable image ({type(e).__name__}: {e})") from None


def load_image(url, where: str):
    """A Pillow image from a data: URL or a local path; ParamError naming `where` otherwise."""
    if not isinstance(url, str) or not url:
        raise ParamError(where, f"{where}: must be a data: URL or a local file path")
    scheme = urlparse(url).scheme.lower()
    if scheme in ("http", "https", "ftp"):
        raise ParamError(where, f"{where}: remote image URLs are refused (this server has no network access); "
                                "send the image as a data:image/...;base64 URL or a local file path")
    if scheme == "data":
        head, _, payload = url.partition(",")
        if ";base64" not in head:
            raise ParamError(where, f"{where}: only base64 data: URLs are supported")
        try:
            return _open(base64.b64decode(payload, validate=True), where)
        except (binascii.Error, ValueError):
            raise ParamError(where, f"{where}: the data: URL's base64 payload does not decode") from None
    path = unquote(urlparse(url).path) if scheme == "file" else url
    if scheme not in ("", "file") and not os.path.isabs(url):
        raise ParamError(where, f"{where}: unsupported URL scheme {scheme!r} (data: URLs and local files only)")
    if not os.path.isabs(path):
        raise ParamError(where, f"{where}: a local image path must be absolute, got {path!r}")
    if not os.path.isfile(path):
        raise ParamError(where, f"{where}: no such file {path}")
    with open(path, "rb") as f:
        return _open(f.read(), where)


def split_image_parts(body: dict, placeholder: str) -> tuple[dict, list]:
    """(the body with each image part replaced by a text part holding `placeholder`, the images in order)."""
    images, messages = [], []
    for i, m in enumerate(body.get("messages") or []):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            messages.append(m)
            continue
        parts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url":
                where = f"messages[{i}].content[{j}].image_url"
                spec = part.get("image_url")
                url = spec.get("url") if isinstance(spec, dict) else spec
                images.append(load_image(url, where))
                parts.append({"type": "text", "text": placeholder})
            else:
                parts.append(part)
        messages.append({**m, "content": parts})
    return {**body, "messages": messages}, images


def placeholder_of(processor) -> str:
    """The text an image part becomes before the chat template runs (Qwen2.5-VL: vision start/end around it)."""
    return getattr(processor, "chat_placeholder", None) or processor.image_token


def encode_with_images(processor, tokenizer, text: str, images: list) -> tuple[list[int], ImageInputs]:
    """Prompt ids with each placeholder expanded to the model's image tokens, and the image inputs.
    Tokenized without added special tokens, as the server tokenizes every rendered chat."""
    if not hasattr(processor, "expand_prompt"):
        raise ParamError("messages", f"messages: images are not served for this model family yet "
                                     f"({type(processor).__name__}); `mft generate --image` runs it")
    try:
        expanded, kwargs = processor.expand_prompt(text, images)
    except Exception as e:  # MftError: placeholders and images disagree (a placeholder typed in the text)
        raise ParamError("messages", f"messages: {e}") from None
    ids = [int(t) for t in tokenizer.encode(expanded, add_special_tokens=False)]
    digest = hashlib.sha256()
    for name in sorted(kwargs):  # every image input (pixels, grids) names the cached blocks
        digest.update(name.encode() + np.ascontiguousarray(kwargs[name]).tobytes())
    return ids, ImageInputs(kwargs, digest.digest(), len(images))
