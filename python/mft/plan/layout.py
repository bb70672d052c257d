"""The parallel layout a recipe asks for: device count, stage split, sharding divisors, problems.

Rules (Megatron-style):
- devices = dp x tp x pp x cp. Each pipeline stage has dp x cp x tp ranks.
- Expert parallelism is folded into a stage's dp x cp x tp ranks (Megatron-Core's
  MoE parallel folding, with no tensor parallelism inside experts): ep must divide
  dp x cp x tp; each expert is then held by expert_dp = dp x cp x tp / ep ranks.
- ZeRO shards over the ranks holding the same replica: dp x cp for dense tensors,
  expert_dp for expert stacks. zero=1: optimizer state (and fp32 master weights);
  zero=2: also gradients; zero=3: also weights.
- Layers are split as evenly as possible, earlier stages taking the remainder;
  the embedding sits on the first stage, the final norm, LM head and MTP modules
  on the last (a tied embedding is held by both when pp > 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

from mft.errors import MftError


@dataclass
class Layout:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    sp: bool = False
    zero: int = 0
    problems: list = field(default_factory=list)

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def stage_ranks(self) -> int:
        return self.dp * self.cp * self.tp

    @property
    def expert_dp(self) -> int:
        return max(1, self.stage_ranks // self.ep)

    @property
    def dense_dp(self) -> int:
        return self.dp * self.cp

    def min_dp_for_ep(self) -> int:
        """The smallest dp >= parallel.dp for which ep divides dp x cp x tp."""
        ct = self.cp * self.tp
        need = self.ep // gcd(self.ep, ct)  # dp must be a multiple of this
        return -(-self.dp // need) * need


def read_layout(cfg, num_layers: int, heads: int, kv_heads: int, num_experts: int, seq_len: int) -> Layout:
    p = cfg.parallel
    lay = Layout(dp=p.dp, tp=p.tp, pp=p.pp, ep=p.ep, cp=p.cp, sp=bool(p.sp), zero=p.zero)
    for key in ("dp", "tp", "pp", "ep", "cp"):
        if getattr(lay, key) < 1:
            raise MftError(f"parallel.{key} must be >= 1, got {getattr(lay, key)}")
    if lay.zero not in (0, 1, 2, 3):
        raise MftError(f"parallel.zero must be 0, 1, 2 or 3, got {lay.zero}")
    bad = lay.problems.append
    if lay.stage_ranks % lay.ep:
        fix = lay.min_dp_for_ep()
        bad(f"parallel.ep={lay.ep} must divide dp*cp*tp={lay.stage_ranks} (experts are spread over a stage's "
            f"data/context/tensor-parallel ranks); parallel.dp={fix} would make it valid "
            f"({fix * lay.tp * lay.pp * lay.cp} devices)")
    if num_experts and num_experts % lay.ep:
        bad(f"parallel.ep={lay.ep} must divide the {num_experts} experts")
    if not num_experts and lay.ep > 1:
        bad(f"parallel.ep={lay.ep} has no effect on a dense model")
    if heads % lay.tp:
        bad(f"parallel.tp={lay.tp} must divide the {heads} attention heads")
    if kv_heads % lay.tp and lay.tp % kv_heads:
        bad(f"parallel.tp={lay.tp} and the {kv_heads} key/value heads must divide one another")
    if lay.pp > num_layers:
        bad(f"parallel.pp={lay.pp} is more than the {num_layers} layers")
    if seq_len % (2 * lay.cp) and lay.cp > 1:
        bad(f"data.seq_len={seq_len} must be a multiple of 2*cp={2 * lay.cp} (load-balanced causal chunks)")
    if lay.sp and lay.tp == 1:
        bad("parallel.sp needs tp > 1 (it splits the norm/residual regions across tensor-parallel ranks)")
    if lay.pp > 1 and cfg.train.grad_accum_steps < lay.pp:
        bad(f"train.grad_accum_steps={cfg.train.grad_accum_steps} micro-batches keep a {lay.pp}-stage pipeline mostly idle")
    return lay


def stage_layers(num_layers: int, pp: int, pp_layers=None) -> list[list[int]]:
    """Layer indices per pipeline stage: `pp_layers` (parallel.pp_layers) when it fits, else as even as
    possible (earlier stages take the remainder), the split `mft train` uses."""
    base, extra = divmod(num_layers, pp)
    fits = pp_layers is not None and len(pp_layers) == pp and sum(pp_layers) == num_layers
    out, start = [], 0
    for k in range(pp):
        n = pp_layers[k] if fits else base + (1 if k < extra else 0)
        out.append(list(range(start, start + n)))
        start += n
    return out
