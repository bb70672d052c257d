"""Multi-token prediction modules (DeepSeek-V3), used only for training.

Module k (1-based) sees, at position i, the previous depth's hidden state
h_i (depth 0: the main model's final, normalised hidden state) and the
embedding of token i+k, and predicts token i+k+1:
    h'_i = eh_proj([enorm(emb(t_{i+k})); hnorm(h_i)]) -> one decoder layer -> h^k_i
    logits = head(head_norm(h^k_i))
The embedding and the output head are the main model's (shared). Shapes stay
static: the shifted inputs are padded at the end and those positions carry
the ignore label.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn, ops

from mft.ops.rms_norm import RMSNorm
from mft.parallel.layers import ColumnParallelLinear

IGNORE_INDEX = -100


class MTPModule(nn.Cell):
    def __init__(self, cfg, layer: nn.Cell, dtype):
        super().__init__()
        h = cfg.hidden_size
        self.enorm = RMSNorm(h, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.hnorm = RMSNorm(h, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)
        self.eh_proj = ColumnParallelLinear(2 * h, h, False, cfg.initializer_range, dtype)
        self.layer = layer
        self.head_norm = RMSNorm(h, cfg.rms_norm_eps, fused=cfg.fused_rmsnorm, dtype=dtype)

    def construct(self, hidden, embedded, cos, sin, mask):
        x = self.eh_proj(mint.cat((self.enorm(embedded), self.hnorm(hidden)), dim=-1))
        out = self.layer(x, cos, sin, mask)[0]
        return out, self.head_norm(out)


def shift_left(x, k: int, fill):
    """(B, S) -> (B, S): x[:, k:] followed by k copies of `fill` (static shape)."""
    pad = ops.full((x.shape[0], k), fill, dtype=x.dtype)
    return mint.cat((x[:, k:], pad), dim=1)


def mtp_loss(model, input_ids, labels, hidden, loss_fn):
    """Mean over the model's MTP modules of the LM loss of each depth's predictions."""
    decoder = model.model
    _, positions, mask = decoder.positions_and_mask(input_ids)
    cos, sin = decoder.rotary_emb(positions)
    total = ops.zeros((), ms.float32)
    for k in range(len(model.mtp)):
        depth = k + 1
        embedded = decoder.embed_tokens(shift_left(input_ids, depth, 0))
        hidden, normed = model.mtp[k](hidden, embedded, cos, sin, mask)
        total = total + loss_fn(model.logits_from_hidden(normed), shift_left(labels, depth, IGNORE_INDEX))
    return total / len(model.mtp)
