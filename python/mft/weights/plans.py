"""Sharding plans: which axis of each tensor is split across tensor-parallel
ranks, which pipeline stage holds it, which expert-parallel rank owns it.

Data-driven: a plan is a list of (regex on the Hugging Face tensor name,
kind) rules, first match wins; kinds are "column" (split axis 0), "row"
(split axis 1), "vocab" (axis 0, padded up to a multiple of tp) and
"replicated" (the default). A new family adds patterns with
`register_rules`, not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mft.errors import MftError

KIND_AXIS = {"column": 0, "row": 1, "vocab": 0, "replicated": None}

# Shared by the Llama-like families (llama, qwen2/3, mixtral, qwen3_moe, deepseek_v3).
DEFAULT_RULES: list[tuple[str, str]] = [
    (r"(^|\.)lm_head\.weight$", "vocab"),
    (r"(^|\.)embed_tokens\.weight$", "vocab"),
    (r"\.(q_proj|k_proj|v_proj|gate_proj|up_proj|q_b_proj|kv_b_proj|w1|w3)\.(weight|bias)$", "column"),
    (r"\.(o_proj|down_proj|w2)\.weight$", "row"),
]


@dataclass
class Plan:
    """Sharding rules as data: (name regex, column/row/vocab/replicated) in order, the layer-number
    regex that assigns pipeline stages, the expert-number regex for expert parallelism, and the
    tensors that go to the last stage."""
    rules: list[tuple[str, str]] = field(default_factory=lambda: list(DEFAULT_RULES))
    layer: str = r"^model\.layers\.(\d+)\."
    expert: str = r"\.experts\.(\d+)\."
    last_stage: list[str] = field(default_factory=lambda: [r"^model\.norm\.", r"(^|\.)lm_head\."])

    def __post_init__(self):
        for pattern, kind in self.rules:
            if kind not in KIND_AXIS:
                raise MftError(f"sharding rule {pattern!r}: kind {kind!r} is not one of {sorted(KIND_AXIS)}")
        self._rules = [(re.compile(p), k) for p, k in self.rules]
        self._layer, self._expert = re.compile(self.layer), re.compile(self.expert)
        self._last = [re.compile(p) for p in self.last_stage]

    def kind(self, name: str) -> str:
        """How tensor `name` is split under tensor parallelism (the first matching rule; else replicated)."""
        return next((k for r, k in self._rules if r.search(name)), "replicated")


PLANS: dict[str, Plan] = {"default": Plan()}


def register_rules(family: str, rules: list[tuple[str, str]]) -> Plan:
    """A family's plan: its rules first, then the defaults."""
    PLANS[family] = Plan(rules=list(rules) + list(DEFAULT_RULES))
    return PLANS[family]


def get_plan(family: str | None = None) -> Plan:
    """The sharding plan of a model family (the default plan when it has none of its own)."""
    return PLANS.get(family or "default", PLANS["default"])


def rank_of(tp_i: int, pp_i: int, ep_i: int, par: dict) -> int:
    """Rank order: tp fastest, then ep, then pp."""
    return (pp_i * par["ep"] + ep_i) * par["tp"] + tp_i


def rank_file(tp_i: int, pp_i: int, ep_i: int) -> str:
    """File name of one rank's weights in a resharded checkpoint."""
    return f"model-tp{tp_i:02d}-pp{pp_i:02d}-ep{ep_i:02d}.safetensors"


class Placer:
    """Where every tensor of one model goes for one (tp, pp, ep)."""

    def __init__(self, tensors: dict[str, tuple[str, list[int]]], tp: int = 1, pp: int = 1, ep: int = 1, plan: Plan | None = None):
        for k, v in (("tp", tp), ("pp", pp), ("ep", ep)):
            if not isinstance(v, int) or v < 1:
                raise MftError(f"--{k} must be a positive integer, got {v!r}")
        self.tensors, self.par, self.plan = tensors, {"dp": 1, "tp": tp, "pp": pp, "ep": ep}, plan or get_plan()
        layers = [int(m.group(1)) for n in tensors if (m := self.plan._layer.search(n))]
        self.num_layers = max(layers) + 1 if layers else 0
        if pp > 1 and self.num_layers < pp:
            raise MftError(f"--pp {pp}: the model has only {self.num_layers} layers to place on pipeline stages")
        experts = [int(m.group(1)) for n in tensors if (m := self.plan._expert.search(n))]
        self.num_experts = max(experts) + 1 if experts else 0
        if ep > 1 and (self.num_experts == 0 or self.num_experts % ep):
            raise MftError(f"--ep {ep}: the model has {self.num_experts} experts per layer, not a multiple of {ep}")

    def stage(self, name: str) -> int:
        """Pipeline stage of tensor `name`: by layer number, the last stage for the final norm and head, else 0."""
        m = self.plan._layer.search(name)
        if m:
            return int(m.group(1)) * self.par["pp"] // self.num_layers
        return self.par["pp"] - 1 if any(r.search(name) for r in self.plan._last) else 0

    def expert_rank(self, name: str) -> int | None:
        """Expert-parallel rank holding tensor `name`, or None for a tensor of no expert."""
        m = self.plan._expert.search(name)
        return int(m.group(1)) // (self.num_experts // self.par["ep"]) if m else None

    def split(self, name: str) -> tuple[int | None, int]:
        """(split axis or None, padded size of that axis)."""
        dtype, shape = self.tensors[name]
        kind = self.plan.kind(name)
        axis, tp = KIND_AXIS[kind], self.par["tp"]
        if axis is None or tp == 1 or axis >= len(shape):
            return None, 0
        size = shape[axis]
        if size % tp:
            if kind != "vocab":
                raise MftError(f"tensor {name!r}: axis {axis} of shape {shape} does not split into --tp {tp} equal parts")
            size += -size % tp  # vocab padding: zero rows at the end
        return axis, size

    def boxes(self, name: str):
        """Yields (tp_i, pp_i, ep_i, offset, shape, stored) for every rank that
        holds the tensor; `stored` marks the one copy a checkpoint keeps."""
        _, shape = self.tensors[name]
        pp_i, ep_owner = self.stage(name), self.expert_rank(name)
        axis, padded = self.split(name)
        ep_ranks = [ep_owner] if ep_owner is not None else range(self.par["ep"])
        for ep_i in ep_ranks:
            for tp_i in range(self.par["tp"]):
                off, shp = [0] * len(shape), list(shape)
                if axis is not None:
                    part = padded // self.par["tp"]
                    off[axis], shp[axis] = tp_i * part, part
                stored = (axis is not None or tp_i == 0) and ep_i == ep_ranks[0]
                yield tp_i, pp_i, ep_i, off, shp, stored

    def layout(self, dtype: str | None = None) -> dict:
        """The target layout.json dict: every tensor's pieces per rank (`dtype` converts float tensors)."""
        tensors = {}
        for name in sorted(self.tensors):
            src_dtype, shape = self.tensors[name]
            pieces = [
                {"rank": rank_of(t, p, e, self.par), "tp": t, "pp": p, "ep": e, "file": rank_file(t, p, e), "offset": off, "shape": shp}
                for t, p, e, off, shp, stored in self.boxes(name)
                if stored
            ]
            tensors[name] = {"shape": list(shape), "dtype": target_dtype(src_dtype, dtype), "split_axis": self.split(name)[0], "pieces": pieces}
        return {"format": "mft-checkpoint-layout", "version": 1, "parallel": dict(self.par), "tensors": tensors}


FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def target_dtype(src: str, want: str | None) -> str:
    """Only float tensors change dtype; integer/bool tensors keep theirs."""
    if want is None or src not in FLOAT_DTYPES:
        return src
    if want not in FLOAT_DTYPES:
        raise MftError(f"--dtype {want!r}: choose one of {sorted(FLOAT_DTYPES)}")
    return want
