"""Compare two runs' activations: per tensor max/mean absolute and relative
error, the first tensor past a tolerance, and for the logits top-1
agreement and KL divergence.

Errors are accumulated over all prompts: max_abs is the maximum, mean_abs
the mean over all elements, rel = ||a - b|| / ||a|| (L2 over all elements,
a = the reference run), max_rel = max|a - b| / max|a|.
KL is KL(P_a || P_b) of the next-token distributions, per position, in nats.
`grad.*` tensors (a training step's gradients per layer) get their own
first divergence.
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError


class _Acc:
    def __init__(self):
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.count = 0
        self.sq_diff = 0.0
        self.sq_ref = 0.0
        self.max_ref = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = a.astype(np.float64), b.astype(np.float64)
        d = np.abs(a - b)
        self.max_abs = max(self.max_abs, float(d.max()) if d.size else 0.0)
        self.sum_abs += float(d.sum())
        self.count += d.size
        self.sq_diff += float((d * d).sum())
        self.sq_ref += float((a * a).sum())
        self.max_ref = max(self.max_ref, float(np.abs(a).max()) if a.size else 0.0)

    def result(self) -> dict:
        return {"max_abs": self.max_abs, "mean_abs": self.sum_abs / max(self.count, 1),
                "rel": float(np.sqrt(self.sq_diff / self.sq_ref)) if self.sq_ref > 0 else (0.0 if self.sq_diff == 0 else float("inf")),
                "max_rel": self.max_abs / self.max_ref if self.max_ref > 0 else (0.0 if self.max_abs == 0 else float("inf"))}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    top = x.max(-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(-1, keepdims=True))


def compare_runs(acts_a, acts_b, tol: float) -> dict:
    """acts_*: per prompt, [(name, array)] as mft.eval.activations.collect returns."""
    if len(acts_a) != len(acts_b):
        raise MftError(f"the two runs have {len(acts_a)} and {len(acts_b)} prompts")
    names = [n for n, _ in acts_a[0]]
    names_b = [n for n, _ in acts_b[0]]
    if names != names_b:
        raise MftError(f"the two runs have different tensors ({len(names)} vs {len(names_b)}: "
                       f"{', '.join(sorted(set(names) ^ set(names_b))[:6])} differ); compare models with the same number of layers")
    accs = {n: _Acc() for n in names}
    agree, positions, kls = 0, 0, []
    for k, (pa, pb) in enumerate(zip(acts_a, acts_b)):
        for (n, a), (_, b) in zip(pa, pb):
            if a.shape != b.shape:
                raise MftError(f"prompt {k}: {n} has shape {a.shape} in one run and {b.shape} in the other")
            accs[n].add(a, b)
        la, lb = dict(pa)["logits"], dict(pb)["logits"]
        agree += int((la.argmax(-1) == lb.argmax(-1)).sum())
        positions += la.shape[0]
        pa_log, pb_log = _log_softmax(la), _log_softmax(lb)
        kls.append((np.exp(pa_log) * (pa_log - pb_log)).sum(-1))
    kl = np.concatenate(kls)
    rows = [{"name": n, **accs[n].result()} for n in names]
    first = next((r["name"] for r in rows if r["rel"] > tol and not r["name"].startswith("grad.")), None)
    first_grad = next((r["name"] for r in rows if r["rel"] > tol and r["name"].startswith("grad.")), None)
    return {"tensors": rows, "tol": tol, "first_divergence": first, "first_grad_divergence": first_grad, "positions": positions,
            "top1_agreement": agree / positions, "kl_mean": float(kl.mean()), "kl_max": float(kl.max())}
