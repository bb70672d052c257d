"""YAML recipes: `base:` inheritance, `--set a.b=c` overrides, strict typing.

Every value remembers where it came from (a file or `--set`), so an error
names the file and the dotted key path, and an unknown key gets the nearest
valid key as a hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import typing
from typing import Any

import yaml

from mft.config.hyperparams import hyperparameter_problems
from mft.config.model_keys import model_key_problems
from mft.config.schema import CHOICES, Config
from mft.errors import ConfigError

_MISSING = object()


def load_config(path: str, overrides: list[str] | None = None) -> Config:
    """Reads `path` (following `base:` chains), applies `--set` overrides, validates."""
    origins: dict[str, str] = {}
    tree = _load_with_bases(os.path.abspath(path), origins, chain=())
    for item in overrides or []:
        _apply_override(tree, item, origins)
    cfg = _build(Config, tree, "", origins, default_source=path)
    for key, problem in itertools.chain(model_key_problems(cfg), hyperparameter_problems(cfg)):
        raise ConfigError(f"{_where(key.split('[')[0], origins, path)}: key '{key}' {problem}")
    return cfg


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config, path: str) -> None:
    """Writes the fully resolved config (atomically)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    os.replace(tmp, path)


# ---------------------------------------------------------------- reading


def _read_yaml(path: str) -> dict:
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _load_with_bases(path: str, origins: dict[str, str], chain: tuple[str, ...]) -> dict:
    if path in chain:
        raise ConfigError(f"{path}: `base:` cycle: {' -> '.join(chain + (path,))}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    tree: dict = {}
    if base is not None:
        bases = base if isinstance(base, list) else [base]
        for b in bases:
            if not isinstance(b, str):
                raise ConfigError(f"{path}: key 'base' must be a file path, got {b!r}")
            base_path = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
            _merge(tree, _load_with_bases(os.path.abspath(base_path), origins, chain + (path,)), "", origins, None)
    _merge(tree, data, "", origins, path)
    return tree


def _merge(dst: dict, src: dict, prefix: str, origins: dict[str, str], source: str | None) -> None:
    """Deep-merges src into dst; mappings merge key by key, anything else replaces."""
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, dotted + ".", origins, source)
        else:
            dst[key] = value
            if source is not None:
                _record_origins(dotted, value, origins, source)


def _record_origins(dotted: str, value: Any, origins: dict[str, str], source: str) -> None:
    origins[dotted] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _record_origins(f"{dotted}.{k}", v, origins, source)


def _apply_override(tree: dict, item: str, origins: dict[str, str]) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.steps=100")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"--set {item!r}: malformed key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep as a string; typing below decides
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = nxt
    node[parts[-1]] = value
    _record_origins(key, value, origins, f"--set {key}")


# ---------------------------------------------------------------- validation


def _build(cls: type, data: Any, prefix: str, origins: dict[str, str], default_source: str) -> Any:
    where = _where(prefix.rstrip("."), origins, default_source)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: section '{prefix.rstrip('.')}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{_where(dotted, origins, default_source)}: unknown key '{dotted}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{default_source}: missing required key '{dotted}'")
            continue
        tp = hints[name]
        value = data[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, dotted + ".", origins, default_source)
        else:
            kwargs[name] = _coerce(value, tp, dotted, origins, default_source)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, dotted: str, origins: dict[str, str], default_source: str) -> Any:
    where = _where(dotted, origins, default_source)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], dotted, origins, default_source)
    ok = True
    if dotted == "train.recompute" and isinstance(value, bool):  # the old boolean form
        raise ConfigError(f"{where}: key 'train.recompute' is now none | full | selective; "
                          f"write {'full' if value else 'none'} instead of {str(value).lower()}")
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is list or origin is list:
        ok = isinstance(value, list)
    if not ok:
        raise ConfigError(f"{where}: key '{dotted}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    choices = CHOICES.get(dotted)
    if choices and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.4)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where}: key '{dotted}' must be one of {', '.join(choices)}, got {value!r}{hint}")
    return value


def _type_name(tp: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _where(dotted: str, origins: dict[str, str], default_source: str) -> str:
    """The file (or --set) that last set `dotted` or its nearest set ancestor."""
    parts = dotted.split(".") if dotted else []
    while parts:
        src = origins.get(".".join(parts))
        if src:
            return src
        parts.pop()
    return default_source
