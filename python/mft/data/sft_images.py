"""Image-text instruction records for `mft data preprocess --format sft` (LLaVA / ShareGPT-with-images).

A record is an ordinary SFT record (`conversations` or `messages`, see
mft.data.sft) plus `image` (one path) or `images` (a list of paths). Each
`<image>` in a turn's text stands for one image, in order; a record with
images and no placeholder gets one `<image>\\n` per image in front of its
first user turn (LLaVA's habit). OpenAI-style content parts
(`[{"type": "image"}, {"type": "text", "text": ...}]`) are read too.

Paths are relative to the JSONL file's folder, or to `--image-dir` when
given. A path that does not name a file is a bad record (file:line); the
pixels themselves are read lazily at training time (mft.finetune.vlm_batches),
where a corrupt image is an error naming the record's file:line.

The stored token ids hold ONE image token (`--image-token`, default
`<image>`, which must be a single token of the tokenizer) per image: the
number of feature tokens an image becomes depends on the model (and, for
Qwen2.5-VL, on the image's size), so the training-time batch builder
expands each one. The sidecar PREFIX_images.jsonl has one line per written
document, in document order: {"images": [absolute paths], "source": "file:line"}.
"""

from __future__ import annotations

import json
import os

from mft.errors import MftError

IMAGES_SUFFIX = "_images.jsonl"
PLACEHOLDER = "<image>"


class BadImageRecord(ValueError):
    """Raised for a record whose images cannot be used; message = the reason."""


def images_path(prefix: str) -> str:
    """The image sidecar beside a dataset prefix: PREFIX_images.jsonl."""
    return os.fspath(prefix) + IMAGES_SUFFIX


def has_images(prefix: str) -> bool:
    """True when the dataset prefix has an image sidecar (image-text SFT data)."""
    return os.path.isfile(images_path(prefix))


def record_images(obj, jsonl_path: str, image_dir: str | None) -> list[str]:
    """Absolute paths of a record's `image` / `images`; [] for a text-only record."""
    if not isinstance(obj, dict) or ("image" not in obj and "images" not in obj):
        return []
    if "image" in obj and "images" in obj:
        raise BadImageRecord("has both 'image' and 'images'")
    raw = obj["images"] if "images" in obj else obj["image"]
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise BadImageRecord("'image'/'images' must be a path or a list of paths")
    base = image_dir if image_dir is not None else os.path.dirname(os.path.abspath(jsonl_path))
    paths = []
    for p in raw:
        full = os.path.abspath(os.path.join(base, p))
        if not os.path.isfile(full):
            raise BadImageRecord(f"image {p!r} not found (looked for {full})")
        paths.append(full)
    return paths


def _content_text(content, where: str):
    """OpenAI content parts -> one string with `<image>` for image parts; strings pass through."""
    if not isinstance(content, list):
        return content
    out = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append(part.get("text", ""))
        elif kind in ("image", "image_url"):
            out.append(PLACEHOLDER)
        else:
            raise BadImageRecord(f"{where}[{i}] is not a text or image part")
    return "".join(out)


def with_placeholders(obj: dict, num_images: int, image_token: str) -> dict:
    """The record with content parts flattened, `<image>` placeholders checked against the image count
    (added in front of the first user turn when absent) and spelled as `image_token`."""
    obj = dict(obj)
    key, text_key = ("messages", "content") if "messages" in obj else ("conversations", "value")
    turns = obj.get(key)
    if not isinstance(turns, list):
        return obj  # mft.data.sft reports the shape
    turns = [dict(t) if isinstance(t, dict) else t for t in turns]
    for i, t in enumerate(turns):
        if isinstance(t, dict) and text_key in t:
            t[text_key] = _content_text(t[text_key], f"{key}[{i}].{text_key}")
    found = sum(t[text_key].count(PLACEHOLDER) for t in turns if isinstance(t, dict) and isinstance(t.get(text_key), str))
    if found == 0 and num_images:
        for t in turns:
            if isinstance(t, dict) and (t.get("role") == "user" or t.get("from") in ("human", "user")) and isinstance(t.get(text_key), str):
                t[text_key] = PLACEHOLDER + "\n" + t[text_key]
                break
        found = num_images
    if found != num_images:
        raise BadImageRecord(f"{found} {PLACEHOLDER} placeholder(s) but {num_images} image(s)")
    if image_token != PLACEHOLDER:
        for t in turns:
            if isinstance(t, dict) and isinstance(t.get(text_key), str):
                t[text_key] = t[text_key].replace(PLACEHOLDER, image_token)
    obj[key] = turns
    obj.pop("image", None)
    obj.pop("images", None)
    return obj


def image_token_id(tokenizer, image_token: str) -> int:
    """The id of the image placeholder token; MftError when the tokenizer does not have it as one token."""
    token_id = tokenizer.token_to_id(image_token)
    if token_id is None:
        raise MftError(f"--image-token {image_token!r} is not a token of the tokenizer (the image placeholder must be one token)")
    return int(token_id)


class SidecarWriter:
    """PREFIX_images.jsonl, written to a temporary name and renamed into place by `finish`."""

    def __init__(self, prefix: str):
        self.path = images_path(prefix)
        self.tmp = self.path + ".tmp"
        self.lines: list[str] = []
        self.with_images = 0

    def add(self, paths: list[str], source: str) -> None:
        """Records one document's image paths and the record (file:line) they came from."""
        self.with_images += bool(paths)
        self.lines.append(json.dumps({"images": paths, "source": source}, ensure_ascii=False))

    def finish(self) -> None:
        """Writes the sidecar when any document has an image; removes a stale one otherwise."""
        if not self.with_images:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        with open(self.tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(self.lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Removes the temporary file (preprocess failed; the old sidecar, if any, stays)."""
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def read_sidecar(prefix: str, documents: int) -> list[dict]:
    """The sidecar's entries, checked to cover `documents` documents."""
    path = images_path(prefix)
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                e = json.loads(line)
                if not isinstance(e.get("images"), list) or not isinstance(e.get("source"), str):
                    raise ValueError("needs 'images' (list) and 'source'")
            except (ValueError, AttributeError) as err:
                raise MftError(f"{path}:{lineno}: not an image sidecar line ({err})") from None
            entries.append(e)
    if len(entries) != documents:
        raise MftError(f"{path}: {len(entries)} lines but {prefix}.idx has {documents} documents (not the same preprocess run)")
    return entries
