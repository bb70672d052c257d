"""Writing JSON files so that a reader never sees a half-written one.

`write_json_atomic(path, data)` writes indented JSON (and a final newline) to `path + ".tmp"`, fsyncs
it and renames it into place: a crash leaves the old file or the new one, never a torn one. Used for
checkpoint folders (config.json, trainer_state.json, layout.json, the manifest), adapter configs and
resharded layouts.
"""

from __future__ import annotations

import json
import os


def write_json_atomic(path: str, data, sort_keys: bool = False) -> None:
    """Writes `data` as indented JSON to a temporary name, fsyncs and renames it into place."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=sort_keys)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
