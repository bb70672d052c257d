"""All communication of mft: collectives, native or exact CPU fallbacks (and process_groups' names).

Every collective is a Cell built once for one `Group` (see `groups.py`), so
it runs the same in PyNative and inside a compiled graph (GRAPH_MODE Cell
or `ms.jit`). A group of size 1 makes every collective the identity, so
single-process code calls them unconditionally.

What MindSpore 2.10's CPU backend has (measured with msrun workers): AllReduce
with op=sum on any group; AllGather and Broadcast on the world group only;
no ReduceScatter, AlltoAll or Send/Receive kernels (they compile, then fail
at run time), and no AllReduce max/min. Where the backend lacks one, mft
builds it exactly from the ones it has:

- all_gather on a sub-group = all_reduce(sum) of a (size, ...) buffer that
  is zero except this rank's row (adding zeros is exact; only the sign of
  a -0.0 is lost);
- broadcast on a sub-group = all_reduce(sum) of x on the root, zeros elsewhere;
- all_reduce max/min = all_gather + max/min over the copies;
- reduce_scatter(x, dim) = all_reduce(x), then this rank's chunk along dim;
- all_to_all(x, split_dim, concat_dim) = all_gather(x), then from every
  source rank's copy take the piece addressed to this rank and concatenate;
- send_recv(x, src, dst) and the ring shift (point to point) = broadcast
  from src in a 2-rank group, else all_gather + select.

One more transport, for the data-parallel gradient all-reduce on CPU only:
`HostAllReduce` sums through a shared-memory segment when every rank of the
group runs on this host (csrc/kernels/host_all_reduce.cc; `host_token`
decides, with one all-reduce, so every rank decides the same;
`MFT_COMM_HOST=0` turns it off). MindSpore's CPU all-reduce is a ring over
its TCP RPC that copies each chunk through sockets and message buffers: on
the demo model's 15.8 MB of gradients it cost ~53 ms of CPU per step and
rank, most of what dp=2 lost against dp=1 (benches/README.md). The sum is
taken in rank order on every rank, so all ranks hold the same bits (for two
ranks the same bits as the ring's a + b).

The fallbacks move more bytes than the op they replace (reduce_scatter and
all_gather-by-all_reduce about 2x, all_to_all and p2p (size)x); they exist for
correctness on CPU. Ascend (HCCL) and GPU (NCCL) use the native ops.
`MFT_COMM_FALLBACK=1` forces the fallbacks on every backend.

The gradients of these Cells are MindSpore's (the gradient of AllReduce is
another AllReduce); the Megatron conjugate pairs with their own backward are
in `mappings.py`.
"""

from __future__ import annotations

import os
import socket

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from mft.errors import MftError
from mft.parallel.groups import Group
# process groups live in process_groups.py; re-exported: comm is the one module for communication
from mft.parallel.process_groups import ProcessGroups, init_from_env, launched_by_msrun, process_groups  # noqa: F401

_REDUCE_OPS = {"sum": ops.ReduceOp.SUM, "mean": ops.ReduceOp.SUM, "max": ops.ReduceOp.MAX, "min": ops.ReduceOp.MIN}


def is_world(group: Group) -> bool:
    return bool(group.name) and group.name.endswith("_world_group")


def backend_has(kind: str, group: Group | None = None) -> bool:
    """True when the current device target implements collective `kind` natively for `group`."""
    if kind == "all_reduce_sum":
        return True
    if os.environ.get("MFT_COMM_FALLBACK", "") == "1":
        return False
    if ms.get_context("device_target") in ("Ascend", "GPU"):
        return True
    # CPU
    return kind in ("all_gather", "broadcast") and group is not None and is_world(group)


# ----------------------------------------------------------------------------- collectives as Cells


def _check_group(group: Group) -> Group:
    if not isinstance(group, Group):
        raise MftError(f"expected an mft.parallel.groups.Group, got {type(group).__name__}")
    return group


class _GatherRows(nn.Cell):
    """Every rank's x concatenated along dim 0, in group-rank order (AllGather's own layout).

    The sub-group fallback scatters x into row `rank` of a zero (size, ...)
    buffer and all-reduces it. Every rank builds the same graph (only the
    constant index differs): graphs whose structure differs by rank were seen
    to run independent collectives in different orders.
    """

    def __init__(self, group: Group, native: bool | None = None):
        super().__init__()
        self.size = group.size
        self.native = backend_has("all_gather", group) if native is None else native
        self.index = ms.Tensor([[group.rank]], ms.int32)
        self.op = None
        if self.size > 1:
            self.op = ops.AllGather(group.name) if self.native else ops.AllReduce(ops.ReduceOp.SUM, group.name)

    def construct(self, x):
        if self.native:
            return self.op(x)
        slot = ops.scatter_nd(self.index, ops.expand_dims(x, 0), (self.size,) + x.shape)
        y = self.op(slot)  # (size, d0, ...)
        return y.reshape((self.size * x.shape[0],) + x.shape[1:])


class AllReduce(nn.Cell):
    """Element-wise sum / mean / max / min over the group; every rank gets the result."""

    def __init__(self, group: Group, op: str = "sum"):
        super().__init__()
        if op not in _REDUCE_OPS:
            raise MftError(f"all_reduce op {op!r}: expected one of {', '.join(_REDUCE_OPS)}")
        self.size = _check_group(group).size
        self.mean = op == "mean"
        self.scale = 1.0 / self.size
        self.gathered = op in ("max", "min") and not backend_has(f"all_reduce_{op}", group)
        self.is_max = op == "max"
        self.op = None
        self.gather = None
        if self.size > 1:
            if self.gathered:
                self.gather = _GatherRows(group)
            else:
                self.op = ops.AllReduce(_REDUCE_OPS[op], group.name)

    def construct(self, x):
        if self.size == 1:
            return x
        if self.gathered:
            copies = self.gather(x).reshape((self.size,) + x.shape)
            if self.is_max:
                return ops.amax(copies, 0)
            return ops.amin(copies, 0)
        y = self.op(x)
        if self.mean:
            y = y * self.scale
        return y


def _host_id() -> int:
    """A 20-bit id of this machine (hostname and boot id), exact in float32."""
    import zlib

    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return zlib.crc32(f"{socket.gethostname()}|{boot}".encode()) & 0xFFFFF


def _host_capable(shm_bytes: int) -> bool:
    if os.environ.get("MFT_COMM_HOST", "").strip() == "0" or ms.get_context("device_target") != "CPU":
        return False
    if not hasattr(os, "sched_getaffinity") or not os.path.isdir("/dev/shm"):
        return False
    st = os.statvfs("/dev/shm")  # containers often give it 64 MB: the segments must fit, with room to spare
    if st.f_bavail * st.f_frsize < 1.25 * shm_bytes:
        return False
    try:
        from mft.ops.host_all_reduce import host_all_reduce_op

        host_all_reduce_op()
    except MftError:
        return False
    return True


def host_token(group: Group, shm_bytes: int = 0) -> tuple[int, int] | None:
    """A token naming `group`'s shared-memory segments when `HostAllReduce` can serve it: CPU target, more than
    one rank, every rank on this host, able to load the kernel and with `shm_bytes` (all the segments) free in
    /dev/shm, MFT_COMM_HOST != 0; else None. A collective every rank of the group must call (PyNative): rank 0's
    random token, every rank's host id and its willingness travel in one all-reduce, so every rank returns the
    same."""
    size = _check_group(group).size
    if size == 1:
        return None
    v = np.zeros(4 + 2 * size, np.float32)
    if group.rank == 0:
        v[:4] = np.frombuffer(os.urandom(8), np.uint16).astype(np.float32)  # 4 x 16 bits, exact in float32
    v[4 + group.rank] = _host_id()
    v[4 + size + group.rank] = 1.0 if _host_capable(shm_bytes) else 0.0
    got = AllReduce(group, "sum")(ms.Tensor(v)).asnumpy().astype(np.int64)
    same_host = len(set(got[4:4 + size].tolist())) == 1
    if not same_host or not all(got[4 + size:] == 1):
        return None
    words = got[:4]
    return int((words[0] << 16) | words[1]), int((words[2] << 16) | words[3])


class HostAllReduce(nn.Cell):
    """Sum / mean over a group whose ranks share this host, through shared memory (see the module doc).

    `token` from `host_token(group)` (the same on every rank); `site` tells apart the call sites sharing a
    token (one segment each: the same site must get the same shape on every call)."""

    def __init__(self, group: Group, op: str, token: tuple[int, int], site: int = 0, timeout_s: int = 600):
        super().__init__()
        if op not in ("sum", "mean"):
            raise MftError(f"host all_reduce op {op!r}: expected sum or mean")
        from mft.ops.host_all_reduce import host_all_reduce_op

        self.size = _check_group(group).size
        self.mean = op == "mean"
        self.scale = 1.0 / self.size
        self.gathered = False  # as AllReduce's attribute (comm_stats counts this as an all-reduce of x)
        hi, lo = (np.uint32(t).view(np.int32) for t in token)
        self.meta = ms.Tensor(np.array([hi, lo, group.rank, self.size, site, timeout_s], np.int32))
        self.op = host_all_reduce_op()

    def construct(self, x):
        y = self.op(x, self.meta)
        if self.mean:
            y = y * self.scale
        return y


class AllGather(nn.Cell):
    """Concatenation of every rank's x along `dim`, in group-rank order."""

    def __init__(self, group: Group, dim: int = 0, native: bool | None = None):
        super().__init__()
        self.size = _check_group(group).size
        self.dim = dim
        self.gather = _GatherRows(group, native) if self.size > 1 else None
        # Split primitives, not ops.chunk: chunk fails to compile inside cells with a custom bprop.
        self.split0 = ops.Split(0, self.size)

    def construct(self, x):
        if self.size == 1:
            return x
        y = self.gather(x)  # (size * d0, ...)
        if self.dim == 0:
            return y
        return ops.concat(self.split0(y), self.dim)


class Broadcast(nn.Cell):
    """Every rank gets the group-rank `root`'s x (all ranks pass a tensor of the same shape/dtype)."""

    def __init__(self, group: Group, root: int = 0, native: bool | None = None):
        super().__init__()
        self.size = _check_group(group).size
        if not 0 <= root < self.size:
            raise MftError(f"broadcast root {root} is not a rank of the {group.kind} group of size {self.size}")
        self.native = backend_has("broadcast", group) if native is None else native
        self.is_root = ms.Tensor(group.rank == root)  # a tensor, so every rank builds the same graph
        self.op = None
        if self.size > 1:
            # MindSpore's root_rank is a global rank.
            self.op = ops.Broadcast(group.ranks[root], group.name) if self.native else ops.AllReduce(ops.ReduceOp.SUM, group.name)

    def construct(self, x):
        if self.size == 1:
            return x
        if self.native:
            return self.op((x,))[0]
        return self.op(ops.select(self.is_root, x, ops.zeros_like(x)))


class ReduceScatter(nn.Cell):
    """Rank i gets chunk i (along `dim`) of the sum (or mean) over ranks; dim size must divide by the group size."""

    def __init__(self, group: Group, dim: int = 0, op: str = "sum", native: bool | None = None):
        super().__init__()
        if op not in ("sum", "mean"):
            raise MftError(f"reduce_scatter op {op!r}: expected sum or mean")
        self.size = _check_group(group).size
        self.rank = group.rank
        self.dim = dim
        self.native = backend_has("reduce_scatter", group) if native is None else native
        self.mean = op == "mean"
        self.scale = 1.0 / self.size
        self.rs = ops.ReduceScatter(ops.ReduceOp.SUM, group.name) if self.size > 1 and self.native else None
        self.ar = ops.AllReduce(ops.ReduceOp.SUM, group.name) if self.size > 1 and not self.native else None
        self.split = ops.Split(dim, self.size)

    def construct(self, x):
        if self.size == 1:
            return x
        if self.native:
            if self.dim != 0:
                x = ops.concat(self.split(x), 0)
            y = self.rs(x)
        else:
            y = self.split(self.ar(x))[self.rank]
        if self.mean:
            y = y * self.scale
        return y


class AllToAll(nn.Cell):
    """Rank r splits x into `size` chunks along split_dim and sends chunk j to rank j;
    each rank concatenates what it receives, in source-rank order, along concat_dim."""

    def __init__(self, group: Group, split_dim: int, concat_dim: int, native: bool | None = None):
        super().__init__()
        self.size = _check_group(group).size
        self.rank = group.rank
        self.concat_dim = concat_dim
        self.native = backend_has("all_to_all", group) if native is None else native
        self.a2a = ops.AlltoAll(self.size, split_dim, concat_dim, group.name) if self.size > 1 and self.native else None
        self.gather = _GatherRows(group) if self.size > 1 and not self.native else None
        self.split0 = ops.Split(0, self.size)
        self.split = ops.Split(split_dim, self.size)

    def construct(self, x):
        if self.size == 1:
            return x
        if self.native:
            return self.a2a(x)
        sources = self.split0(self.gather(x))  # every rank's x, in rank order
        pieces = ()
        for r in range(self.size):
            pieces = pieces + (self.split(sources[r])[self.rank],)
        return ops.concat(pieces, self.concat_dim)


class Shift(nn.Cell):
    """Ring point-to-point: each rank receives the x of group rank (rank - offset) mod size.

    Collective over the group (every member calls it). offset=1 sends each
    pipeline stage's tensor to the next stage (the last wraps to the first).
    """

    def __init__(self, group: Group, offset: int = 1):
        super().__init__()
        self.size = _check_group(group).size
        self.source = (group.rank - offset) % self.size
        self.identity = self.size == 1 or self.source == group.rank
        self.gather = _GatherRows(group) if not self.identity else None
        self.split0 = ops.Split(0, self.size)

    def construct(self, x):
        if self.identity:
            return x
        return self.split0(self.gather(x))[self.source]


class SendRecv(nn.Cell):
    """Point to point: group rank `dst` gets group rank `src`'s x; every other rank gets its own x back.

    Every member of the group calls it with a tensor of the same shape and
    dtype. Native Send/Receive (Ascend/GPU) pairs would need the ranks
    outside the pair to skip the call and a Receive that knows its shape in
    advance; one graph built for all ranks expresses this collective form
    more simply, so it is built from Broadcast (2-rank group) or AllGather +
    select on every backend (exact: values are copied, never summed, except
    by the CPU sub-group fallbacks, which add zeros).
    """

    def __init__(self, group: Group, src: int, dst: int):
        super().__init__()
        self.size = _check_group(group).size
        for name, value in (("src", src), ("dst", dst)):
            if not 0 <= value < self.size:
                raise MftError(f"send_recv {name}={value} is not a rank of the {group.kind} group of size {self.size}")
        self.src = src
        self.receives = ms.Tensor(group.rank == dst and src != dst)  # a tensor: the same graph on every rank
        self.identity = self.size == 1 or src == dst
        self.use_broadcast = self.size == 2
        self.bc = Broadcast(group, src) if not self.identity and self.use_broadcast else None
        self.gather = _GatherRows(group) if not self.identity and not self.use_broadcast else None
        self.split0 = ops.Split(0, self.size)

    def construct(self, x):
        if self.identity:
            return x
        if self.use_broadcast:
            y = self.bc(x)
        else:
            y = self.split0(self.gather(x))[self.src]
        # select, not a Python branch: the collective stays in every rank's graph (an unused
        # op would be dropped) and the graphs keep one structure.
        return ops.select(self.receives, y, x)


# ----------------------------------------------------------------------------- functional forms (PyNative)


def all_reduce(x, group: Group, op: str = "sum"):
    return AllReduce(group, op)(x)


def all_gather(x, group: Group, dim: int = 0):
    return AllGather(group, dim)(x)


def broadcast(x, group: Group, root: int = 0):
    return Broadcast(group, root)(x)


def reduce_scatter(x, group: Group, dim: int = 0, op: str = "sum"):
    return ReduceScatter(group, dim, op)(x)


def all_to_all(x, group: Group, split_dim: int, concat_dim: int):
    return AllToAll(group, split_dim, concat_dim)(x)


def send_recv(x, group: Group, src: int, dst: int):
    return SendRecv(group, src, dst)(x)


def shift(x, group: Group, offset: int = 1):
    return Shift(group, offset)(x)


def barrier(group: Group) -> None:
    """Returns once every rank of `group` has called it (PyNative: a one-element all-reduce)."""
    if group.size == 1:
        return
    import numpy as np

    AllReduce(group)(ms.Tensor(np.zeros(1, np.float32))).asnumpy()
