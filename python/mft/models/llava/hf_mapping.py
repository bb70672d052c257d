"""Hugging Face tensor names of LLaVA checkpoints <-> our parameter names.

Our cells are named like transformers 5's LlavaForConditionalGeneration
modules (`model.language_model.*`, `model.vision_tower.*`,
`model.multi_modal_projector.*`, `lm_head`). Checkpoint files spell them
differently, and all spellings seen are read (`canonical_name`):

- what transformers 5 writes (checked with 5.24 in
  tests/fixtures/make_vlm_fixtures.py) and llava-hf folders on the Hub:
  `language_model.model.*`, `language_model.lm_head.weight`,
  `multi_modal_projector.*`, `vision_tower.*`;
- module names (`model.language_model.*`, `lm_head.weight`, ...);
- the CLIP tower nested one level deeper, `vision_tower.vision_model.*`
  (CLIPVisionModel before transformers 5, as in llava-hf/llava-1.5-7b-hf).

Saving writes what transformers 5 writes (`param_to_hf_name`).
"""

from __future__ import annotations

from mft.errors import MftError

IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".position_ids")

# (file spelling, our parameter prefix); the first is what we write.
_PREFIXES = (
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
    ("vision_tower.", "model.vision_tower."),
)
_NESTED = "model.vision_tower.vision_model."
_FLAT = "model.vision_tower."


def canonical_name(hf_name: str) -> str:
    """Any accepted spelling -> our parameter name."""
    if not hf_name.startswith(("model.", "lm_head.")):
        for file_prefix, ours in _PREFIXES:
            if hf_name.startswith(file_prefix):
                hf_name = ours + hf_name[len(file_prefix):]
                break
    if hf_name.startswith(_NESTED):
        hf_name = _FLAT + hf_name[len(_NESTED):]
    return hf_name


def param_to_hf_name(param_name: str) -> str:
    """The Hugging Face tensor name of an mft parameter (the checkpoint's prefix for the language model / tower put back)."""
    for file_prefix, ours in _PREFIXES:
        if param_name.startswith(ours):
            return file_prefix + param_name[len(ours):]
    return param_name


def canonical_tensors(tensors: dict, source: str) -> dict:
    """Tensors renamed to the spelling we write, so the generic checked loader can compare names."""
    out, origin = {}, {}
    for name, arr in tensors.items():
        key = param_to_hf_name(canonical_name(name))
        if key in out:
            raise MftError(f"{source}: tensors {origin[key]!r} and {name!r} are the same weight under two spellings")
        out[key], origin[key] = arr, name
    return out


def optional_tensors(cfg) -> dict:
    """A tied head may still be stored."""
    t = cfg.text_config
    return {"language_model.lm_head.weight": (t.vocab_size, t.hidden_size)} if cfg.tie_word_embeddings else {}
