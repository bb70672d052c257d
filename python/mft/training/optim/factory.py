"""`build_optimizer(opt_cfg, params)`: the optimizer Cell `train.optimizer` describes."""

from __future__ import annotations

from mft.config.schema import CHOICES, OptimizerConfig
from mft.errors import ConfigError
from mft.training.optim.rules import param_settings, uses_muon


def build_optimizer(opt_cfg: OptimizerConfig, params, device: str | None = None):
    """An nn.Cell over `params` (trainable Parameters, in gradient order):
    `construct(grads, lr)` updates them in place, `state_tensors()` names its state.
    `device` (run.device; None = MindSpore's current device target) resolves `train.optimizer.fused: null`."""
    params = list(params)
    settings = param_settings(params, opt_cfg.weight_decay, opt_cfg.param_groups)
    lr_scales = [s.lr_scale for s in settings]
    weight_decays = [s.weight_decay for s in settings]
    name = opt_cfg.name
    if opt_cfg.fused and name != "adamw":
        raise ConfigError(f"key 'train.optimizer.fused': the fused kernel is AdamW's; train.optimizer.name is {name!r} "
                          "(set fused: null or false)")
    if name == "adamw":
        from mft.training.optim.adamw import AdamW

        return AdamW(params, betas=opt_cfg.betas, eps=opt_cfg.eps, lr_scales=lr_scales, weight_decays=weight_decays,
                     fused=_fused(opt_cfg, device))
    if name == "muon":
        from mft.training.optim.muon import Muon

        m = opt_cfg.muon
        return Muon(
            params, [uses_muon(p.name, tuple(p.shape)) for p in params], lr_scales, weight_decays,
            momentum=m.momentum, nesterov=m.nesterov, ns_steps=m.ns_steps, update_rms=m.update_rms,
            betas=opt_cfg.betas, eps=opt_cfg.eps,
        )
    if name == "adafactor":
        from mft.training.optim.adafactor import Adafactor

        a = opt_cfg.adafactor
        return Adafactor(
            params, lr_scales, weight_decays, beta1=opt_cfg.betas[0], beta2=opt_cfg.betas[1],
            decay_rate=a.decay_rate, eps=opt_cfg.eps, clip_threshold=a.clip_threshold,
        )
    allowed = ", ".join(CHOICES["train.optimizer.name"])
    raise ConfigError(f"key 'train.optimizer.name' must be one of {allowed}, got {name!r}")


def _fused(opt_cfg: OptimizerConfig, device: str | None) -> bool:
    from mft.training.model_factory import fused_kernels_available

    if device is None:
        import mindspore as ms

        device = ms.get_context("device_target")
    available = fused_kernels_available(device)
    if opt_cfg.fused is None:
        return available
    if opt_cfg.fused and not available:
        raise ConfigError(f"key 'train.optimizer.fused': true needs mft's C++ kernels, which run on CPU (mft._kernels); "
                          f"run.device is {device!r} (set fused: null or false)")
    return bool(opt_cfg.fused)
