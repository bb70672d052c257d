"""Load-time checks of `parallel.zero` (pure Python: no MindSpore; `run_setup.check_supported` calls it)."""

from __future__ import annotations

from mft.errors import MftError

STAGES = (0, 1, 2)


def check_config(cfg) -> None:
    """Load-time checks of `parallel.zero` (MftError naming the key)."""
    zero = cfg.parallel.zero
    if zero not in STAGES or isinstance(zero, bool):
        raise MftError(f"parallel.zero must be 0, 1 (optimizer state sharded over dp) or 2 (+ gradients), got {zero!r}")
    if not zero:
        return
    name = cfg.train.optimizer.name
    if name != "adamw":
        raise MftError(f"parallel.zero={zero} with train.optimizer.name={name}: only adamw's update is element-wise, so "
                       f"only it can run on a flat 1/dp slice ({name} needs whole matrices / factored moments); "
                       "use train.optimizer.name=adamw or parallel.zero=0")
    m = cfg.monitor
    for key, on in (("monitor.spike.action=skip", m.spike.action == "skip"), ("monitor.layer_norms", m.layer_norms),
                    ("monitor.optimizer_state_norm", m.optimizer_state_norm)):
        if on:
            raise MftError(f"parallel.zero={zero} with {key}: per-tensor gradient / optimizer-state norms over ZeRO "
                           "shards are not implemented; turn it off or set parallel.zero=0")
