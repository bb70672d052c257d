"""`run.deterministic` (default true): the same config and data give the same bits, whatever the machine's load.

mft's own C++ kernels (fused RMSNorm, flash attention) split work by a fixed
thread count, never by load. MindSpore's CPU reduction kernels choose how
many tasks to split a reduction into at run time, from measured timings
(their "auto search"), so under a varying load the summation order — and
the last bits — change. On the demo shape (configs/tiny/demo.yaml) the
kernel that shows it is the composed RMSNorm's weight gradient (a sum over
all batch x seq rows): docs/advanced/performance_tuning.md (Determinism) has the bisection. With the fused
kernels (the CPU default) no such reduction remains in the step.

So, on CPU with `run.deterministic`:
- the fused paths (default): nothing to do, they are deterministic;
- a composed RMSNorm (model.fused_rmsnorm=false, or the C++ kernels not
  built) or MLA attention (deepseek_v3: composed softmax): MindSpore's CPU
  runtime is pinned to one thread (`runtime_num_threads=1`), so every
  reduction has one fixed order. That costs speed: docs/feature/other_training_features.md.
On Ascend/GPU, MindSpore's `deterministic="ON"` context is set.
"""

from __future__ import annotations


def composed_reductions(cfg) -> list[str]:
    """Which composed (MindSpore-reduction) paths this config's model takes on CPU; [] when all are fused."""
    from mft.config.schema import NO_FUSED_ATTENTION
    from mft.training.model_factory import runtime_overrides

    out = []
    switches = runtime_overrides(cfg)
    if not switches["fused_rmsnorm"]:
        out.append("composed RMSNorm")
    if cfg.model.arch in NO_FUSED_ATTENTION:
        out.append(f"composed attention ({cfg.model.arch})")
    elif not switches.get("fused_attention"):  # model.fused_attention=false, or fp16/bf16 compute (the kernel is fp32)
        out.append("composed attention (model.fused_attention off)")
    return out


_saved_threads: list = []


def restore_threads() -> None:
    """After a run: the thread count before `apply_determinism` (set_context is process-wide)."""
    import mindspore as ms

    while _saved_threads:
        ms.set_context(runtime_num_threads=_saved_threads.pop())


def apply_determinism(cfg) -> str:
    """Sets MindSpore's context (call right after ms.set_device, before any kernel runs); returns what was done."""
    import mindspore as ms

    if not cfg.run.deterministic:
        return "off (run.deterministic=false): results may vary with machine load"
    if cfg.run.device != "CPU":
        ms.set_context(deterministic="ON")
        return "MindSpore deterministic=ON"
    paths = composed_reductions(cfg)
    if not paths:
        return "fused kernels only: deterministic as is"
    _saved_threads.append(ms.get_context("runtime_num_threads"))
    ms.set_context(runtime_num_threads=1)
    return f"{', '.join(paths)}: MindSpore CPU runtime pinned to 1 thread"
