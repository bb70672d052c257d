"""JSON files: written so that a reader never sees a half-written one, read with errors naming the file.

`write_json_atomic(path, data)` writes indented JSON (and a final newline) to `path + ".tmp"`, fsyncs
it and renames it into place: a crash leaves the old file or the new one, never a torn one. Used for
checkpoint folders (config.json, trainer_state.json, layout.json, the manifest), adapter configs and
resharded layouts. `read_json_object(path)` reads a file that must hold one JSON object; an
unreadable file, bad JSON or another value is an MftError naming the file.
"""

from __future__ import annotations

import json
import os

from mft.errors import MftError


def write_json_atomic(path: str, data, sort_keys: bool = False) -> None:
    """Writes `data` as indented JSON to a temporary name, fsyncs and renames it into place."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=sort_keys)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json_object(path: str) -> dict:
    """The JSON object in `path`; MftError "<path>: cannot read: ...", "<path>: invalid JSON: ..." or
    "<path>: expected a JSON object"."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise MftError(f"{path}: cannot read: {e.strerror or e}") from None
    except ValueError as e:  # json.JSONDecodeError, or UnicodeDecodeError on bytes that are not UTF-8
        raise MftError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MftError(f"{path}: expected a JSON object")
    return data
