"""Process-group layout: which global ranks form the dp / tp / pp / cp / ep groups.

Rank order is Megatron's default ("tp-cp-dp-pp", fastest-varying first):

    rank = tp_i + tp * (cp_i + cp * (dp_i + dp * pp_i))

so tensor-parallel peers are neighbours (on one node when tp <= cards per
node), then context-parallel, then data-parallel replicas, and pipeline
stages are the outermost blocks. Expert parallelism is folded into a
pipeline stage's dp x cp x tp ranks (Megatron-Core's MoE parallel folding
with no tensor parallelism inside experts, the rule `mft.plan.layout` uses
too): ep divides dp*cp*tp, the ep group of a rank is its block of `ep`
consecutive ranks within the stage, and the expert-data-parallel group
("edp") holds the stage's ranks at the same position in their ep block.

This module is pure Python (no MindSpore) so layouts can be checked and
planned without a cluster; `mft.parallel.comm` turns them into communicator
groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from mft.errors import MftError

KINDS = ("tp", "cp", "dp", "pp", "ep", "edp")


@dataclass(frozen=True)
class Layout:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1

    def __post_init__(self):
        for key in ("dp", "tp", "pp", "cp", "ep"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise MftError(f"parallel.{key} must be an integer >= 1, got {value!r}")
        if self.stage_size % self.ep:
            raise MftError(
                f"parallel.ep={self.ep} must divide dp*cp*tp={self.stage_size} (experts are spread over a pipeline stage's ranks)"
            )

    @classmethod
    def from_config(cls, parallel) -> "Layout":
        return cls(dp=parallel.dp, tp=parallel.tp, pp=parallel.pp, cp=parallel.cp, ep=parallel.ep)

    @property
    def stage_size(self) -> int:
        """Ranks per pipeline stage: dp * cp * tp."""
        return self.tp * self.cp * self.dp

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.dp * self.pp

    def coords(self, rank: int) -> dict[str, int]:
        """{tp, cp, dp, pp, ep, edp}: this rank's index along each dimension."""
        if not 0 <= rank < self.world_size:
            raise MftError(f"rank {rank} is outside a layout of {self.world_size} ranks ({self})")
        tp_i = rank % self.tp
        rest = rank // self.tp
        cp_i = rest % self.cp
        rest //= self.cp
        dp_i = rest % self.dp
        pp_i = rest // self.dp
        s = rank % self.stage_size
        return {"tp": tp_i, "cp": cp_i, "dp": dp_i, "pp": pp_i, "ep": s % self.ep, "edp": s // self.ep}

    def rank_of(self, tp: int = 0, cp: int = 0, dp: int = 0, pp: int = 0) -> int:
        return tp + self.tp * (cp + self.cp * (dp + self.dp * pp))

    def group_ranks(self, kind: str, rank: int) -> list[int]:
        """The global ranks (ascending) of `rank`'s group of this kind; its index there is its group rank."""
        c = self.coords(rank)
        base = dict(tp=c["tp"], cp=c["cp"], dp=c["dp"], pp=c["pp"])
        if kind in ("tp", "cp", "pp"):
            size = getattr(self, kind)
            return [self.rank_of(**{**base, kind: i}) for i in range(size)]
        if kind == "dp":
            return [self.rank_of(**{**base, "dp": i}) for i in range(self.dp)]
        stage_first = c["pp"] * self.stage_size
        if kind == "ep":  # ep consecutive ranks of the stage
            return [stage_first + c["edp"] * self.ep + i for i in range(self.ep)]
        if kind == "edp":  # the same position in every ep block of the stage
            return [stage_first + c["ep"] + self.ep * j for j in range(self.stage_size // self.ep)]
        raise MftError(f"unknown process-group kind {kind!r}; expected one of {', '.join(KINDS)}")

    def all_groups(self, kind: str) -> list[list[int]]:
        """Every distinct group of this kind (a partition of all ranks)."""
        seen: dict[tuple[int, ...], None] = {}
        for r in range(self.world_size):
            seen.setdefault(tuple(self.group_ranks(kind, r)), None)
        return [list(g) for g in seen]


@dataclass(frozen=True)
class Group:
    """One communicator as a rank sees it: `name` is MindSpore's group name (None when size 1)."""

    kind: str
    ranks: tuple[int, ...]
    rank: int  # this process's index in `ranks`
    name: str | None

    @property
    def size(self) -> int:
        return len(self.ranks)


def group_name(kind: str, ranks) -> str:
    return f"mft_{kind}_" + "_".join(str(r) for r in ranks)
