"""Per-layer activations of a decoder model, and .npz dumps of them.

`collect(model, ids)` runs the decoder block by block (PyNative, the
model's own cells, the same wiring as DecoderModel.construct) and returns
the named tensors in order: `embed`, `layer.0` .. `layer.{N-1}` (each
block's output), `norm` (final norm), `logits` (fp32).

A dump (`save_dump`) is an .npz with one array per prompt and name
(`p{k}/{name}`), the prompts' ids (`p{k}/input_ids`) and `names`, so two
runs made apart (other processes, layouts, machines) can be compared later.
With gradients (`gradients(model, ids)`), the dump also holds `grad.*` tensors.
"""

from __future__ import annotations

import re

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


def _grad_group(name: str) -> str:
    m = re.search(r"layers\.(\d+)\.", name)
    if m:
        return f"grad.layer.{m.group(1)}"
    if "embed_tokens" in name:
        return "grad.embed"
    if name.startswith("model.norm"):
        return "grad.norm"
    if name.startswith("lm_head"):
        return "grad.lm_head"
    return "grad.other"


def gradients(model, ids) -> list[tuple[str, np.ndarray]]:
    """Gradients of one training step's LM loss (mean next-token cross-entropy
    over the prompt, fp32) w.r.t. every trainable parameter, concatenated per
    group in parameter order: grad.embed, grad.layer.i, grad.norm, grad.lm_head."""
    import mindspore as ms
    from mindspore import mint

    x = ms.Tensor(np.asarray(ids, np.int32)[None], ms.int32)
    params = model.trainable_params()

    def loss_fn(inp):
        logits = model(inp)[0, :-1].astype(ms.float32)
        target = inp[0, 1:]
        top = logits.max(axis=-1, keepdims=True)
        lse = mint.log(mint.exp(logits - top).sum(-1)) + top.squeeze(-1)
        picked = mint.gather(logits, 1, target.expand_dims(-1)).squeeze(-1)
        return (lse - picked).mean()

    if len(ids) < 2:
        raise MftError("gradients need prompts of at least 2 tokens")
    _, grads = ms.value_and_grad(loss_fn, None, params)(x)
    groups: dict[str, list[np.ndarray]] = {}
    for p, g in zip(params, grads):
        groups.setdefault(_grad_group(p.name), []).append(g.astype(ms.float32).asnumpy().ravel())
    order = sorted(groups, key=lambda n: (["grad.embed", "grad.layer", "grad.norm", "grad.lm_head", "grad.other"].index(
        n if not n.startswith("grad.layer.") else "grad.layer"), int(n.rsplit(".", 1)[1]) if n.startswith("grad.layer.") else 0))
    return [(n, np.concatenate(groups[n])) for n in order]
