"""safetensors I/O used across mft: `load_file(path)`, `save_file(tensors, path, metadata)`.

Backed by the pure-numpy reference for now; the Rust core replaces the
implementation behind these same two names.
"""

from mft.weights.safetensors_ref import load_file, read_header, save_file

__all__ = ["load_file", "save_file", "read_header"]
