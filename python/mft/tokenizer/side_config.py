"""tokenizer_config.json (and chat_template.jinja) beside a tokenizer.json,
read as transformers (>= 5) reads them next to a tokenizer.json."""

from __future__ import annotations

import json
import os

from mft.errors import MftError


def read_side_config(path: str) -> dict:
    """tokenizer_config.json (and chat_template.jinja) beside `path`, or {}.
    A list of named chat templates becomes a {name: template} dict."""
    folder = os.path.dirname(path)
    side = os.path.join(folder, "tokenizer_config.json")
    cfg: dict = {}
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            raise MftError(f"{side}: cannot read ({e})") from None
        if not isinstance(loaded, dict):
            raise MftError(f"{side}: expected a JSON object at the top level, got {type(loaded).__name__}")
        cfg = dict(loaded)
    template = cfg.get("chat_template")
    if isinstance(template, list):
        named = {}
        for i, item in enumerate(template):
            if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str)):
                raise MftError(f"{side}: chat_template[{i}] must be {{\"name\": str, \"template\": str}}")
            named[item["name"]] = item["template"]
        cfg["chat_template"] = named
    elif template is not None and not isinstance(template, str):
        raise MftError(f"{side}: chat_template must be a string or a list of named templates, got {type(template).__name__}")
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(jinja):
        try:
            with open(jinja, encoding="utf-8") as f:
                cfg["chat_template"] = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise MftError(f"{jinja}: cannot read ({e})") from None
    return cfg


def config_flag(cfg: dict, key: str) -> bool | None:
    """A boolean setting (`add_bos_token`, ...), None when absent or not a bool."""
    v = cfg.get(key)
    return v if isinstance(v, bool) else None


def config_max_length(cfg: dict) -> int | None:
    """`model_max_length`; None when absent or transformers' "no limit" placeholder (1e30)."""
    v = cfg.get("model_max_length")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v >= 1e29:
        return None
    return int(v)


def named_token(cfg: dict, key: str, specials: dict[str, int], names, token_to_id) -> int | None:
    """The id of the token the config names under `key` (a string or
    {"content": ...}), else of the first of `names` among the special tokens."""
    name = cfg.get(key)
    if isinstance(name, dict):
        name = name.get("content")
    if isinstance(name, str):
        found = token_to_id(name)
        if found is not None:
            return found
    for n in names:
        if n in specials:
            return specials[n]
    return None
