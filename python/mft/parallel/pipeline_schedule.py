"""The 1F1B pipeline schedule (non-interleaved, as Megatron's), as data: pure Python, no MindSpore.

`one_f_one_b(stages, micro_batches, stage)` returns the instructions stage
`stage` runs for one optimizer step:

- `Compute("F", m)`: forward of micro-batch m (its input is the embedding of
  the token ids on the first stage, else the activation received for m);
- `Compute("B", m)`: backward of micro-batch m (from the loss on the last
  stage, else from the output gradient received for m); the parameter
  gradients add into the step's accumulators;
- `Exchange(side, send, recv)`: one rendezvous with the neighbour on `side`
  ("prev" = stage - 1, "next" = stage + 1): `send` / `recv` are
  ("act", m), ("grad", m) or None. Both neighbours call their matching
  Exchange at the same point of their programs; it carries a tensor each
  way (a zero tensor where one side has nothing to send), so one collective
  on the two-rank group does it (`mft.parallel.pipeline.PairExchange`).

Warm-up: stage s runs min(stages - s - 1, micro_batches) forwards, then the
steady phase alternates one forward and one backward (the output of the
forward goes next in the same exchange that brings the gradient of the
oldest micro-batch back), then the cool-down runs the remaining backwards.
At most stages - s micro-batches are in flight on stage s, which bounds the
activations it keeps. `simulate` runs all programs against each other
(rendezvous semantics) and raises if they would deadlock, mismatch, or
violate a data dependency; the unit tests run it for many shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mft.errors import MftError


@dataclass(frozen=True)
class Compute:
    kind: str  # "F" or "B"
    micro: int


@dataclass(frozen=True)
class Exchange:
    side: str  # "prev" or "next"
    send: tuple[str, int] | None
    recv: tuple[str, int] | None


def one_f_one_b(stages: int, micro_batches: int, stage: int) -> list:
    """Stage `stage`'s instruction list for one step (see the module doc)."""
    if stages < 1 or micro_batches < 1 or not 0 <= stage < stages:
        raise MftError(f"1F1B schedule: need stages >= 1, micro_batches >= 1, 0 <= stage < stages; got {stages}, {micro_batches}, {stage}")
    first, last = stage == 0, stage == stages - 1
    warmup = min(stages - stage - 1, micro_batches)
    steady = micro_batches - warmup
    prog: list = []

    def prev(send, recv):
        if not first and (send or recv):
            prog.append(Exchange("prev", send, recv))

    def next_(send, recv):
        if not last and (send or recv):
            prog.append(Exchange("next", send, recv))

    f = b = 0
    for _ in range(warmup):
        prev(None, ("act", f))
        prog.append(Compute("F", f))
        next_(("act", f), None)
        f += 1
    if steady:
        prev(None, ("act", f))
    for i in range(steady):
        prog.append(Compute("F", f))
        next_(("act", f), ("grad", b))  # send forward, receive backward
        f += 1
        prog.append(Compute("B", b))
        prev(("grad", b), ("act", f) if i < steady - 1 else None)  # send backward, receive the next forward
        b += 1
    for _ in range(warmup):
        next_(None, ("grad", b))
        prog.append(Compute("B", b))
        prev(("grad", b), None)
        b += 1
    return prog


def simulate(stages: int, micro_batches: int, programs: list[list] | None = None) -> list[tuple]:
    """Runs every stage's program against its neighbours; returns the global event order
    [(stage, instruction)]. Raises MftError on deadlock, an exchange whose two sides disagree,
    or a compute whose input has not arrived (forward without its activation, backward without
    its forward or its output gradient)."""
    programs = programs or [one_f_one_b(stages, micro_batches, s) for s in range(stages)]
    pc = [0] * stages
    have: list[set] = [set() for _ in range(stages)]  # ("act", m) / ("grad", m) received, ("F", m) done
    events: list[tuple] = []

    def check_compute(s, ins):
        first, last = s == 0, s == stages - 1
        if ins.kind == "F" and not first and ("act", ins.micro) not in have[s]:
            raise MftError(f"stage {s}: forward {ins.micro} before its activation arrived")
        if ins.kind == "B":
            if ("F", ins.micro) not in have[s]:
                raise MftError(f"stage {s}: backward {ins.micro} before its forward")
            if not last and ("grad", ins.micro) not in have[s]:
                raise MftError(f"stage {s}: backward {ins.micro} before its output gradient arrived")
        have[s].add((ins.kind, ins.micro))

    def can_send(s, item):
        kind, m = item
        return (("F" if kind == "act" else "B"), m) in have[s]

    while any(pc[s] < len(programs[s]) for s in range(stages)):
        progressed = False
        for s in range(stages):
            while pc[s] < len(programs[s]) and isinstance(programs[s][pc[s]], Compute):
                check_compute(s, programs[s][pc[s]])
                events.append((s, programs[s][pc[s]]))
                pc[s] += 1
                progressed = True
        for s in range(stages - 1):  # the pair (s, s + 1)
            if pc[s] >= len(programs[s]) or pc[s + 1] >= len(programs[s + 1]):
                continue
            a, b = programs[s][pc[s]], programs[s + 1][pc[s + 1]]
            if not (isinstance(a, Exchange) and a.side == "next" and isinstance(b, Exchange) and b.side == "prev"):
                continue
            if a.send != b.recv or b.send != a.recv:
                raise MftError(f"stages {s} and {s + 1} disagree on an exchange: {a} vs {b}")
            for st, ins in ((s, a), (s + 1, b)):
                if ins.send is not None and not can_send(st, ins.send):
                    raise MftError(f"stage {st} sends {ins.send} before computing it")
            if a.recv:
                have[s].add(a.recv)
            if b.recv:
                have[s + 1].add(b.recv)
            events.append((s, a))
            events.append((s + 1, b))
            pc[s] += 1
            pc[s + 1] += 1
            progressed = True
        if not progressed:
            stuck = {s: programs[s][pc[s]] for s in range(stages) if pc[s] < len(programs[s])}
            raise MftError(f"pipeline schedule deadlocks: {stuck}")
    for s in range(stages):
        done = {m for k, m in have[s] if k == "B"}
        if done != set(range(micro_batches)):
            raise MftError(f"stage {s} ran backwards for {sorted(done)}, expected all {micro_batches} micro-batches")
    return events


def max_in_flight(program: list) -> int:
    """Most micro-batches whose forward ran and backward did not yet (activations kept)."""
    live = peak = 0
    for ins in program:
        if isinstance(ins, Compute):
            live += 1 if ins.kind == "F" else -1
            peak = max(peak, live)
    return peak
