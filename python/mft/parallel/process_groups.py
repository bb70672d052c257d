"""This rank's process groups: joining the msrun cluster and creating a communicator per group.

`init_from_env(layout)` joins the cluster (under msrun) and creates this rank's groups of every kind
(`world`, `dp`, `tp`, `pp`, `cp`, `ep`, `edp`) for a `Layout`; `process_groups()` returns them. The
collectives over these groups are in `mft.parallel.comm`, which re-exports these names.
"""

from __future__ import annotations

import os

from mft.errors import MftError
from mft.parallel.groups import KINDS, Group, Layout, group_name


class ProcessGroups:
    """This rank's groups of every kind for a layout (`world`, `dp`, `tp`, `pp`, `cp`, `ep`, `edp`)."""

    def __init__(self, layout: Layout, rank: int, world_name: str | None):
        self.layout = layout
        self.rank = rank
        self.world_size = layout.world_size
        everyone = tuple(range(self.world_size))
        self.world = Group("world", everyone, rank, world_name if self.world_size > 1 else None)
        self._groups = {"world": self.world}
        for kind in KINDS:
            ranks = tuple(layout.group_ranks(kind, rank))
            if len(ranks) == 1:
                name = None
            elif ranks == everyone:
                name = world_name
            else:
                name = group_name(kind, ranks)
            self._groups[kind] = Group(kind, ranks, ranks.index(rank), name)

    def __getattr__(self, kind: str) -> Group:
        groups = self.__dict__.get("_groups", {})
        if kind in groups:
            return groups[kind]
        raise AttributeError(kind)

    def get(self, kind: str) -> Group:
        if kind not in self._groups:
            raise MftError(f"unknown process-group kind {kind!r}; expected world or one of {', '.join(KINDS)}")
        return self._groups[kind]

    def to_create(self) -> list[Group]:
        """The sub-world communicators this rank must create (each once, in a fixed order)."""
        out, names = [], set()
        for kind in KINDS:
            g = self._groups[kind]
            if g.name and g.name != self.world.name and g.name not in names:
                names.add(g.name)
                out.append(g)
        return out


_GROUPS: ProcessGroups | None = None


def launched_by_msrun() -> bool:
    return os.environ.get("MS_ROLE", "") in ("MS_WORKER", "MS_SCHED")


def init_from_env(layout: Layout | None = None) -> ProcessGroups:
    """Joins the msrun cluster (if launched by msrun) and creates this rank's groups for `layout`.

    Not under msrun, the layout must be one process (world size 1) and no
    communicator is created. Under msrun the layout's world size must equal
    the number of workers.
    """
    global _GROUPS
    layout = layout or Layout()
    if not launched_by_msrun():
        if layout.world_size != 1:
            raise MftError(
                f"the parallel layout {layout} needs {layout.world_size} processes; launch it with "
                f"`mft train CONFIG --nproc {layout.world_size}`"
            )
        _GROUPS = ProcessGroups(layout, 0, None)
        return _GROUPS
    from mindspore.communication import GlobalComm, create_group, get_group_size, get_rank, init

    init()
    world, rank = get_group_size(), get_rank()
    if layout.world_size == 1 and world > 1:
        layout = Layout(dp=world)  # no layout given: plain data parallel over every worker
    if world != layout.world_size:
        raise MftError(
            f"parallel layout dp*tp*pp*cp = {layout.dp}*{layout.tp}*{layout.pp}*{layout.cp} = {layout.world_size} "
            f"processes, but {world} workers were started; set --nproc (x --nnodes) to {layout.world_size}"
        )
    groups = ProcessGroups(layout, rank, GlobalComm.WORLD_COMM_GROUP)
    for g in groups.to_create():
        create_group(g.name, list(g.ranks))
    _GROUPS = groups
    return groups


def process_groups() -> ProcessGroups:
    """The groups made by the last `init_from_env` (a single-process world if it was never called)."""
    global _GROUPS
    if _GROUPS is None:
        _GROUPS = ProcessGroups(Layout(), 0, None)
    return _GROUPS


def joined() -> ProcessGroups | None:
    """The groups of the last `init_from_env`, or None before it (`process_groups()` would make a one-process world)."""
    return _GROUPS
