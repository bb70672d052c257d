"""Data-parallel speed, bytes communicated per layout, CPU fallback collectives against native ones.

Three parts, each launching msrun workers through `mft.parallel.launch` (the
workers run this file again with `--role`):

speed        `mft train` on the demo model's shape (configs/tiny/demo.yaml:
             hidden 256, 4 layers, vocab 4096, seq 128, global batch 16),
             dp=1 (one msrun worker) against dp=2 (two), every worker on one
             thread (MindSpore `runtime_num_threads=1`, mft kernels
             MFT_KERNEL_THREADS=MFT_ATTENTION_THREADS=1, OMP/BLAS 1);
             tokens/s from the median step time of the last steps, and the
             ratio dp2 / dp1 (goal >= 1.7 on 2 cores); also by the process
             CPU time of the busiest rank per step (what the step would take
             on idle cores; a shared machine distorts wall time), and
             optionally dp=2 with zero=1/2 (`--speed-layouts`).
bytes        the same model in PyNative (so every collective call passes
             through Python) for a few steps with `mft.parallel.comm_stats`
             counting at the comm layer: bytes sent per rank per step for
             dp=2, dp=2 zero=1, dp=2 zero=2, tp=2, against the theoretical
             volume of each layout (ring all-reduce 2(n-1)/n B, all-gather
             and reduce-scatter (n-1)/n B of the whole buffer). Two columns:
             costed as the native ops (`native`) and as this backend runs them
             (`issued`: CPU fallbacks included).
phases       where dp=2 loses time against dp=1, every worker pinned to one core
             and one thread as in `speed`, by process CPU time per step (what a
             loaded machine distorts least): one worker times the compiled step
             at the full and at half the global micro-batch (so per step
             F + 2X and F + X: X = the work that halves with dp, F = what every
             rank pays whatever dp is: optimizer, launches); two workers time
             the dp=2 step with and without the gradient all-reduce (R), the
             all-reduce cell alone on the model's gradients, and the trainer's
             per-step PyNative loss mean. Variants alternate in rounds.
collectives  per message size, on the 2-worker world group: all_gather and
             broadcast native against the fallbacks built from all_reduce
             that comm.py uses on sub-groups, and reduce_scatter's fallback
             against all_reduce (CPU has no native reduce_scatter). Median
             time per call of a graph-mode Cell.

    .venv/bin/python benches/parallel.py [--only speed|phases|bytes|collectives] [--steps 14] [--runs 1]
        [--speed-layouts dp1,dp2,dp2_zero1,dp2_zero2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
CORPUS = os.path.join(ROOT, "data", "kjv", "kjv.jsonl")
DEMO = dict(hidden_size=256, intermediate_size=688, num_layers=4, num_heads=4, num_kv_heads=2, vocab_size=4096, seq=128,
            batch=16)
ONE_THREAD = {"MFT_KERNEL_THREADS": "1", "MFT_ATTENTION_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MFT_BENCH_THREADS": "1"}


# ----------------------------------------------------------------------------- parent side


def prepare_data(workdir: str) -> tuple[str, str]:
    from mft.data.preprocess import preprocess
    from mft.tokenizer import Tokenizer

    tok = os.path.join(workdir, "tok.json")
    prefix = os.path.join(workdir, "kjv")
    if not os.path.exists(prefix + ".idx"):
        t = Tokenizer.train([CORPUS], vocab_size=DEMO["vocab_size"])
        t.save(tok)
        preprocess([CORPUS], t, prefix)
    return tok, prefix


def write_recipe(workdir: str, name: str, steps: int, tok: str, prefix: str) -> str:
    s = DEMO
    recipe = {
        "run": {"name": name, "output_dir": os.path.join(workdir, name), "seed": 0},
        "tokenizer": {"path": tok},
        "data": {"prefix": prefix, "seq_len": s["seq"]},
        "model": {"arch": "llama", "vocab_size": s["vocab_size"], "hidden_size": s["hidden_size"],
                  "intermediate_size": s["intermediate_size"], "num_layers": s["num_layers"], "num_heads": s["num_heads"],
                  "num_kv_heads": s["num_kv_heads"], "max_position_embeddings": 512, "tie_word_embeddings": True},
        "train": {"steps": steps, "micro_batch_size": s["batch"], "clip_grad_norm": 1.0,
                  "optimizer": {"lr": 1e-3, "weight_decay": 0.1}, "lr_schedule": {"name": "constant"}},
        "checkpoint": {"every_steps": 0, "keep": 1},
        "monitor": {"log_every": 1, "progress_bar": False, "tensorboard": False},
    }  # fmt: skip
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        json.dump(recipe, f)  # JSON is YAML
    shutil.rmtree(recipe["run"]["output_dir"], ignore_errors=True)  # a fresh run every time
    return path


def launch(nproc: int, log_dir: str, role_args: list[str], env: dict | None = None, timeout_s: float = 3600) -> None:
    from mft.parallel.launch import LaunchSpec, launch as msrun

    spec = LaunchSpec(nproc=nproc, log_dir=log_dir, extra_env=dict(env or {}))
    res = msrun(spec, ["-m", "mft.parallel.worker", "run", os.path.abspath(__file__), *role_args], timeout_s=timeout_s)
    if res.returncode != 0:
        raise SystemExit(f"msrun failed ({res.returncode}): rank {res.failed_rank}: {res.error}; logs in {log_dir}")


def out_dir(recipe: str) -> str:
    with open(recipe) as f:
        return json.load(f)["run"]["output_dir"]


def step_times(recipe: str) -> list[float]:
    with open(os.path.join(out_dir(recipe), "metrics.jsonl")) as f:
        return [json.loads(line)["step_time_s"] for line in f if line.strip()]


SPEED = {"dp1": (1, []), "dp2": (2, []), "dp2_zero1": (2, ["parallel.zero=1"]), "dp2_zero2": (2, ["parallel.zero=2"])}


def speed(args, workdir, tok, prefix) -> dict:
    tokens = DEMO["batch"] * DEMO["seq"]
    names = args.speed_layouts.split(",")
    rows = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for run in range(args.runs):
        for name in names:  # alternating, so every layout sees the same machine state as far as possible
            dp, extra = SPEED[name]
            recipe = write_recipe(workdir, f"speed_{name}_{run}", args.steps, tok, prefix)
            role = ["--role", "train", recipe, "--set", f"parallel.dp={dp}"]
            for s in extra:
                role += ["--set", s]
            launch(dp, os.path.join(out_dir(recipe), "logs"), role, env=ONE_THREAD)
            med = statistics.median(step_times(recipe)[-args.tail:])
            rows[name].append(med)
            # CPU seconds of the slowest rank per step: the wall time this layout would take on otherwise idle cores
            per_rank = []
            for r in range(dp):
                with open(os.path.join(out_dir(recipe), f"cpu_rank{r}.json")) as f:
                    per_rank.append(json.load(f)["step_cpu_s"][-args.tail:])
            c = statistics.median(max(v) for v in zip(*per_rank))
            cpu[name].append(c)
            print(f"  {name} run {run}: median step {med * 1e3:.0f} ms wall -> {tokens / med:.0f} tokens/s; "
                  f"{c * 1e3:.0f} ms CPU on the busiest rank -> {tokens / c:.0f} tokens per CPU-second", flush=True)
    med = {n: statistics.median(v) for n, v in rows.items()}
    cmed = {n: statistics.median(v) for n, v in cpu.items()}
    res = {n: {"step_s": med[n], "tokens_per_s": tokens / med[n], "runs_s": rows[n], "step_cpu_s": cmed[n],
               "runs_cpu_s": cpu[n]} for n in names}
    if "dp1" in med:
        for n in names:
            if n != "dp1":
                res[n]["vs_dp1_wall"] = med["dp1"] / med[n]
                res[n]["vs_dp1_cpu"] = cmed["dp1"] / cmed[n]
                print(f"speed: {n} / dp1 = {res[n]['vs_dp1_wall']:.2f}x wall (goal for dp2 >= 1.7x), "
                      f"{res[n]['vs_dp1_cpu']:.2f}x by CPU time of the busiest rank")
    return res


def phases(args, workdir, tok, prefix) -> dict:
    recipe = write_recipe(workdir, "phases", args.steps, tok, prefix)
    got = {}
    for dp in (1, 2):
        path = os.path.join(workdir, f"phases_dp{dp}.json")
        launch(dp, os.path.join(workdir, f"phases_logs_dp{dp}"), ["--role", "phases", recipe, str(dp), path,
                                                                  str(args.runs)], env=ONE_THREAD)  # fmt: skip
        with open(path) as f:
            got.update(json.load(f))
    full, half = got["dp1_full_batch"]["cpu"], got["dp1_half_batch"]["cpu"]
    x, f = full - half, 2 * half - full
    dp2, bare = got["dp2_step"]["cpu"], got["dp2_no_reduce"]["cpu"]
    res = {"samples": got, "X_s": x, "F_s": f, "R_step_s": dp2 - bare, "R_alone_s": got["dp2_all_reduce"]["cpu"],
           "loss_mean_s": got["dp2_loss_mean"]["cpu"], "cpu_ratio": full / dp2, "cpu_ratio_without_R": full / bare}
    print(f"  dp gradient all-reduce: {got.pop('transport')}")
    for k, v in got.items():
        print(f"  {k}: {v['cpu'] * 1e3:.1f} ms CPU, {v['wall'] * 1e3:.1f} ms wall (median per step)")
    print(f"phases: X (halves with dp) {x * 1e3:.0f} ms, F (every rank) {f * 1e3:.0f} ms, all-reduce in the step "
          f"{res['R_step_s'] * 1e3:.0f} ms (alone {res['R_alone_s'] * 1e3:.0f} ms), loss mean "
          f"{res['loss_mean_s'] * 1e3:.1f} ms; dp1/dp2 by CPU {res['cpu_ratio']:.2f}x, without the all-reduce "
          f"{res['cpu_ratio_without_R']:.2f}x")
    return res


LAYOUTS = {
    "dp": ["parallel.dp=2"],
    "zero1": ["parallel.dp=2", "parallel.zero=1"],
    "zero2": ["parallel.dp=2", "parallel.zero=2"],
    "tp": ["parallel.tp=2"],
}


def theory(layout: str, n_params: int, n: int = 2) -> float:
    """Bytes per rank per step of the layout's algorithm, everything native (fp32)."""
    s = DEMO
    b4 = 4.0 * n_params
    padded4 = 4.0 * (-(-n_params // n) * n)
    ring = 2.0 * (n - 1) / n
    if layout == "dp":
        return ring * b4  # one all-reduce of the gradient
    if layout == "zero1":
        return ring * b4 + (n - 1) / n * padded4  # all-reduce of the gradient + all-gather of the updated weights
    if layout == "zero2":
        return 2 * (n - 1) / n * padded4  # reduce-scatter of the gradient + all-gather of the weights
    if layout == "tp":  # Megatron: per layer 2 all-reduces forward + 2 backward of (batch, seq, hidden) fp32,
        act = 4.0 * s["batch"] * s["seq"] * s["hidden_size"]  # + embedding forward + LM-head input backward,
        return ring * ((4 * s["num_layers"] + 2) * act + 3 * 4.0 * s["batch"] * s["seq"])  # + 3 (batch, seq) for the CE
    raise ValueError(layout)


def bytes_table(args, workdir, tok, prefix) -> dict:
    res = {}
    for name, sets in LAYOUTS.items():
        recipe = write_recipe(workdir, f"bytes_{name}", args.bytes_steps, tok, prefix)
        role = ["--role", "bytes", recipe, "--set", "run.mode=pynative"]
        for s in sets:
            role += ["--set", s]
        launch(2, os.path.join(out_dir(recipe), "logs"), role)
        with open(os.path.join(out_dir(recipe), "comm_rank0.json")) as f:
            got = json.load(f)
        steps = got["steps"][1:] or got["steps"]  # the first step is the same; kept only if it is the only one
        issued = statistics.median(s["issued"] for s in steps)
        native = statistics.median(s["native"] for s in steps)
        want = theory(name, got["parameters"])
        res[name] = {"issued": issued, "native": native, "theory": want, "parameters": got["parameters"],
                     "by_kind": steps[-1]["by_kind"], "native_vs_theory": native / want, "issued_vs_theory": issued / want}
        print(f"  {name}: counted {native / 1e6:.3f} MB native ({native / want:.3f}x theory {want / 1e6:.3f} MB), "
              f"{issued / 1e6:.3f} MB as issued on CPU ({issued / want:.2f}x)", flush=True)
    return res


def collectives(args, workdir) -> dict:
    path = os.path.join(workdir, "collectives.json")
    launch(2, os.path.join(workdir, "coll_logs"), ["--role", "collectives", path])
    with open(path) as f:
        res = json.load(f)
    for row in res["rows"]:
        print(f"  {row['op']:>14} {row['bytes'] / 1024:>8.0f} KiB: native {row['native_ms']:.3f} ms, fallback "
              f"{row['fallback_ms']:.3f} ms ({row['fallback_ms'] / row['native_ms']:.2f}x)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["speed", "phases", "bytes", "collectives"], action="append")
    ap.add_argument("--steps", type=int, default=14, help="speed: steps per run")
    ap.add_argument("--tail", type=int, default=8, help="speed: the last N step times are used")
    ap.add_argument("--runs", type=int, default=1, help="speed: runs per layout (alternating); phases: rounds")
    ap.add_argument("--speed-layouts", default="dp1,dp2", help=f"speed: comma-separated, of {', '.join(SPEED)}")
    ap.add_argument("--bytes-steps", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args, rest = ap.parse_known_args()
    if args.role:
        return worker(args.role, rest)
    parts = args.only or ["speed", "bytes", "collectives"]
    workdir = args.workdir or tempfile.mkdtemp(prefix="mft_bench_parallel_")
    os.makedirs(workdir, exist_ok=True)
    with open("/proc/loadavg") as f:
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {f.read().split()[:3]}, "
              f"{os.cpu_count()} cores; workdir {workdir}", flush=True)
    tok, prefix = prepare_data(workdir)
    results = {}
    if "speed" in parts:
        results["speed"] = speed(args, workdir, tok, prefix)
    if "phases" in parts:
        results["phases"] = phases(args, workdir, tok, prefix)
    if "bytes" in parts:
        results["bytes"] = bytes_table(args, workdir, tok, prefix)
    if "collectives" in parts:
        results["collectives"] = collectives(args, workdir)
    with open("/proc/loadavg") as f:
        print(f"load average at the end {f.read().split()[:3]}")
    path = os.path.join(workdir, f"results_{'_'.join(parts)}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results: {path}")


# ----------------------------------------------------------------------------- worker side (inside msrun)


def _config(rest):
    from mft.config import load_config

    overrides = [rest[i + 1] for i in range(1, len(rest) - 1, 2) if rest[i] == "--set"]
    return load_config(rest[0], overrides)


def _one_thread():
    import mindspore as ms

    if os.environ.get("MFT_BENCH_THREADS") == "1":
        ms.set_context(runtime_num_threads=1)
        # One core per worker as well: MindSpore's runtime keeps threads of its own busy whatever
        # runtime_num_threads says, so an unpinned dp=1 worker used ~1.9 cores and the dp=2 / dp=1 ratio
        # compared two cores with two cores. Rank r gets core r (mod the cores this process may use).
        cores = sorted(os.sched_getaffinity(0))
        rank = max(0, int(os.environ.get("RANK_ID", "0")))
        os.sched_setaffinity(0, {cores[rank % len(cores)]})


def worker(role: str, rest: list[str]) -> None:
    if role == "train":
        _one_thread()
        train_worker(_config(rest))
    elif role == "phases":
        _one_thread()
        phases_worker(rest)
    elif role == "bytes":
        bytes_worker(_config(rest))
    elif role == "collectives":
        collectives_worker(rest[0])
    else:
        raise SystemExit(f"unknown role {role}")


def train_worker(cfg) -> None:
    """`mft train` with each step's process CPU time recorded (every thread of this worker; one thread here),
    so the run can also be read by work done, which other jobs on a shared machine disturb less than wall time."""
    from mft.parallel import comm
    from mft.training import train_step
    from mft.training.trainer import train

    cpu = []
    original = train_step.TrainStep.step

    def timed_step(self, *a, **k):
        t0 = time.process_time()
        out = original(self, *a, **k)
        cpu.append(time.process_time() - t0)
        return out

    train_step.TrainStep.step = timed_step
    try:
        train(cfg, echo=lambda *a, **k: None)
    finally:
        train_step.TrainStep.step = original
    with open(os.path.join(cfg.run.output_dir, f"cpu_rank{comm.process_groups().rank}.json"), "w") as f:
        json.dump({"step_cpu_s": cpu}, f)


def phases_worker(rest) -> None:
    """Per-step CPU / wall medians of the step variants (see `phases`), alternating in rounds."""
    import numpy as np

    import mindspore as ms
    from mindspore import nn

    from mft.config import load_config
    from mft.parallel import comm
    from mft.parallel.data_parallel import DataParallel
    from mft.parallel.groups import Layout
    from mft.tokenizer import Tokenizer
    from mft.training.model_factory import build_model
    from mft.training.optim import build_optimizer
    from mft.training.train_step import TrainStep, graph_mode

    recipe, dp, path, rounds = rest[0], int(rest[1]), rest[2], int(rest[3])
    cfg = load_config(recipe, [f"parallel.dp={dp}"])
    groups = comm.init_from_env(Layout(dp=dp))
    data = DataParallel(groups.dp)
    model, _ = build_model(cfg, Tokenizer.from_file(cfg.tokenizer.path))
    params = model.trainable_params()
    rng = np.random.default_rng(groups.rank)
    seq, batch = cfg.data.seq_len, cfg.train.micro_batch_size

    def ids(b):
        x = rng.integers(0, DEMO["vocab_size"], (1, b, seq)).astype(np.int32)
        return x, x

    def step_of(reducer, b):
        st = TrainStep(model, build_optimizer(cfg.train.optimizer, params), cfg.train.clip_grad_norm, 1,
                       grad_reducer=reducer)
        x, y = ids(b)
        return lambda: st.step(x, y, 1e-5)

    class Reduce(nn.Cell):
        def __init__(self, reducer):
            super().__init__()
            self.reducer = reducer

        def construct(self, grads):
            return self.reducer(grads)[0]

    variants = {}
    if dp == 1:
        variants["dp1_full_batch"] = step_of(None, batch)
        variants["dp1_half_batch"] = step_of(None, batch // 2)
    else:
        variants["dp2_step"] = step_of(data.grad_reducer(params), batch // 2)
        variants["dp2_no_reduce"] = step_of(None, batch // 2)
        reducer = data.grad_reducer(params)
        reduce_cell = Reduce(reducer)
        grads = tuple(ms.Tensor(np.full(p.shape, 1e-3, np.float32)) for p in params)

        def reduce_alone():
            with graph_mode():
                reduce_cell(grads).asnumpy()

        variants["dp2_all_reduce"] = reduce_alone
        variants["dp2_loss_mean"] = lambda: data.mean(1.0)
    samples = {k: {"cpu": [], "wall": []} for k in variants}
    for fn in variants.values():  # compile + warm up
        for _ in range(3):
            fn()
    per_round = max(4, args_steps(recipe) // 2)
    for _ in range(rounds):
        for name, fn in variants.items():
            comm.barrier(groups.world)
            for _ in range(per_round):
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                samples[name]["cpu"].append(time.process_time() - c0)
                samples[name]["wall"].append(time.perf_counter() - w0)
    out = {k: {"cpu": statistics.median(v["cpu"]), "wall": statistics.median(v["wall"]), "n": len(v["cpu"])}
           for k, v in samples.items()}
    if dp > 1:
        out["transport"] = reducer.transport  # shared memory or MindSpore's all-reduce
    if groups.rank == 0:
        with open(path, "w") as f:
            json.dump(out, f)


def args_steps(recipe: str) -> int:
    with open(recipe) as f:
        return int(json.load(f)["train"]["steps"])


def bytes_worker(cfg) -> None:
    from mft.parallel import comm, comm_stats
    from mft.training import train_step
    from mft.training.trainer import train

    import numpy as np

    per_step = []
    sizes = []
    original = train_step.TrainStep.step

    def counted_step(self, *a, **k):
        if not sizes:  # this rank's trainable parameters (tp: its pieces)
            sizes.extend(int(np.prod(p.shape)) for p in self.optimizer.params)
        with comm_stats.counting() as ledger:
            out = original(self, *a, **k)
        per_step.append(ledger.totals())
        return out

    train_step.TrainStep.step = counted_step
    try:
        train(cfg, echo=lambda *a, **k: None)
    finally:
        train_step.TrainStep.step = original
    rank = comm.process_groups().rank
    with open(os.path.join(cfg.run.output_dir, f"comm_rank{rank}.json"), "w") as f:
        json.dump({"steps": per_step, "parameters": sum(sizes)}, f)


def collectives_worker(path: str) -> None:
    import numpy as np

    import mindspore as ms
    from mindspore import nn

    from mft.parallel import comm
    from mft.parallel.groups import Layout
    from mft.training.train_step import graph_mode

    groups = comm.init_from_env(Layout(dp=2))
    world = groups.world

    class Run(nn.Cell):
        def __init__(self, op):
            super().__init__()
            self.op = op

        def construct(self, x):
            return self.op(x)

    pairs = {
        "all_gather": (lambda: comm.AllGather(world, 0, native=True), lambda: comm.AllGather(world, 0, native=False)),
        "broadcast": (lambda: comm.Broadcast(world, 0, native=True), lambda: comm.Broadcast(world, 0, native=False)),
        # no native reduce_scatter on CPU: its fallback against the all_reduce a native one would undercut
        "reduce_scatter": (lambda: comm.AllReduce(world, "sum"), lambda: comm.ReduceScatter(world, 0, "sum", native=False)),
    }
    rows = []
    for elements in (1024, 16384, 262144, 4194304):
        x = ms.Tensor(np.ones(elements, np.float32))
        reps = 30 if elements <= 16384 else (10 if elements <= 262144 else 4)
        for op, (make_native, make_fallback) in pairs.items():
            cells = {"native": Run(make_native()), "fallback": Run(make_fallback())}
            samples = {"native": [], "fallback": []}
            with graph_mode():
                for cell in cells.values():
                    for _ in range(3):
                        cell(x).asnumpy()
                comm.barrier(world)
                for _ in range(reps):  # interleaved, so both sides see the same machine load
                    for side, cell in cells.items():
                        t0 = time.perf_counter()
                        cell(x).asnumpy()
                        samples[side].append(time.perf_counter() - t0)
            times = {side: statistics.median(v) * 1e3 for side, v in samples.items()}
            rows.append({"op": op, "bytes": elements * 4, "native_ms": times["native"], "fallback_ms": times["fallback"],
                         "reps": reps})
    if groups.rank == 0:
        with open(path, "w") as f:
            json.dump({"rows": rows, "note": "reduce_scatter row: native_ms is all_reduce of the same input"}, f)


if __name__ == "__main__":
    main()
