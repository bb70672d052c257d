"""Per-layer activations of a decoder model, and .npz dumps of them.

`collect(model, ids)` runs the decoder block by block (PyNative, the
model's own cells, the same wiring as DecoderModel.construct) and returns
the named tensors in order: `embed`, `layer.0` .. `layer.{N-1}` (each
block's output), `norm` (final norm), `logits` (fp32).

A dump (`save_dump`) is an .npz with one array per prompt and name
(`p{k}/{name}`), the prompts' ids (`p{k}/input_ids`) and `names`, so two
runs made apart (other processes, layouts, machines) can be compared later.
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError


def collect(model, ids) -> list[tuple[str, np.ndarray]]:
    import mindspore as ms

    dm = model.model
    x = ms.Tensor(np.asarray(ids, np.int32)[None], ms.int32)
    _, positions, mask = dm.positions_and_mask(x)
    cos, sin = dm.rotary_emb(positions)
    h = dm.embed_tokens(x)
    out = [("embed", h)]
    for i in range(dm.num_layers):
        h = dm.layers[i](h, cos, sin, mask)[0]
        out.append((f"layer.{i}", h))
    h = dm.norm(h)
    out.append(("norm", h))
    out.append(("logits", model.logits_from_hidden(h)))
    return [(n, t.astype(ms.float32).asnumpy()[0]) for n, t in out]


def save_dump(path: str, prompts: list[list[int]], acts: list[list[tuple[str, np.ndarray]]]) -> None:
    arrays = {"names": np.array([n for n, _ in acts[0]])}
    for k, (ids, a) in enumerate(zip(prompts, acts)):
        arrays[f"p{k}/input_ids"] = np.asarray(ids, np.int64)
        for n, v in a:
            arrays[f"p{k}/{n}"] = v
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_dump(path: str) -> tuple[list[list[int]], list[list[tuple[str, np.ndarray]]]]:
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise MftError(f"{path}: not an activation dump (.npz written by mft compare --dump): {e}") from None
    if "names" not in z.files:
        raise MftError(f"{path}: not an activation dump: no 'names' array")
    names = [str(n) for n in z["names"]]
    prompts, acts = [], []
    k = 0
    while f"p{k}/input_ids" in z.files:
        missing = [n for n in names if f"p{k}/{n}" not in z.files]
        if missing:
            raise MftError(f"{path}: prompt {k} lacks {', '.join(missing[:4])}")
        prompts.append(z[f"p{k}/input_ids"].tolist())
        acts.append([(n, z[f"p{k}/{n}"]) for n in names])
        k += 1
    if not prompts:
        raise MftError(f"{path}: activation dump with no prompts")
    return prompts, acts
