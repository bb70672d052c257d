"""What the train loop asks of `monitor.*`: one object, so trainer.py only calls it.

`TrainMonitor` owns validation (`evaluate.Validator`), spike detection
(`spikes.SpikeDetector`), peak memory / MFU (`mft.monitor.system_metrics`),
per-layer gradient and weight norms and the optimizer-state norm. The
trainer calls:
- `step_class(TrainStep)`: the step to build (`GatedTrainStep` when the
  update must be gated — spike action skip — or per-tensor grad norms are on);
- `run_step(step_fn, inputs, labels, lr)`: the step, with the spike limits;
- `after_step(step, loss, grad_norm)`: spike verdict -> metrics fields;
  `discarded` says whether the update was dropped;
- `record_fields(step, tokens_per_s)`: extra metrics.jsonl fields at a
  logged step; `validate(step)`: val_loss / val_ppl at eval steps ({} else).
"""

from __future__ import annotations

import math
import re

import numpy as np

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def norm_group(name: str) -> str:
    """Parameter name -> its metrics group: layer_<i>, embedding, head, final_norm or other."""
    m = _LAYER.search(name)
    if m:
        return f"layer_{int(m.group(1))}"
    if "embed_tokens" in name:
        return "embedding"
    if "lm_head" in name:
        return "head"
    if name.endswith("norm.weight") or name.endswith("norm.bias"):
        return "final_norm"
    return "other"


def grouped_norms(names: list[str], sq_sums) -> dict[str, float]:
    """sqrt of the summed squares per group, in first-seen order."""
    acc: dict[str, float] = {}
    for name, sq in zip(names, sq_sums):
        g = norm_group(name)
        acc[g] = acc.get(g, 0.0) + float(sq)
    return {g: math.sqrt(v) for g, v in acc.items()}


class TrainMonitor:
    def __init__(self, cfg, model, params, dp, valid_stream, logger, processes: int = 1):
        from mft.training.spikes import SpikeDetector

        self.cfg = cfg
        self.m = cfg.monitor
        self.params = params
        self.names = [p.name for p in params]
        self.logger = logger
        self.spikes = SpikeDetector.from_config(self.m.spike) if self.m.spike.action != "off" else None
        self.gate = self.m.spike.action == "skip"
        self.discarded = False
        self.last_verdict = None
        self.validator = None
        if valid_stream is not None and self.m.eval_every > 0:
            from mft.training.evaluate import Validator

            self.validator = Validator(model, valid_stream, self.m.eval_batches, cfg.train.micro_batch_size, dp,
                                       jit=cfg.run.mode == "graph")
        self.mfu = None
        if self.m.mfu:
            from mft.errors import MftError
            from mft.monitor.system_metrics import MfuMeter

            try:
                self.mfu = MfuMeter.from_config(cfg, processes)
            except MftError as e:  # a metric must not stop training: plan cannot size this model
                logger.warning("mfu not logged: %s", e)
        if self.mfu is not None:
            logger.info("mfu: %.4g train FLOPs/token, ceiling %.3g FLOP/s per process (%s)", self.mfu.flops_per_token,
                        self.mfu.peak_flops, "monitor.peak_tflops" if self.m.peak_tflops > 0 else "measured sgemm")

    @property
    def needs_gated_step(self) -> bool:
        return self.gate or self.m.layer_norms

    def step_class(self, default):
        if not self.needs_gated_step:
            return default
        import functools

        from mft.training.gated_step import GatedTrainStep

        return functools.partial(GatedTrainStep, grad_sq=self.m.layer_norms)

    def run_step(self, step_fn, inputs, labels, lr: float):
        if not self.needs_gated_step:
            return step_fn.step(inputs, labels, lr)
        limits = self.spikes.limits() if (self.gate and self.spikes) else (math.inf, math.inf)
        return step_fn.step(inputs, labels, lr, limits=limits)

    def after_step(self, step: int, loss: float, grad_norm: float, step_fn) -> dict:
        """Spike bookkeeping for the step just run; fields for its metrics record."""
        self.discarded = self.gate and not getattr(step_fn, "last_applied", True)
        if self.spikes is None:
            return {}
        if getattr(step_fn, "loss_scale", None) is not None and not math.isfinite(grad_norm):
            return {}  # an fp16 overflow: the loss scaler already skipped it and lowers the scale
        verdict = self.spikes.observe(loss, grad_norm)  # skip: raises after `consecutive` spikes in a row
        self.last_verdict = verdict
        if verdict.spike:
            finite = math.isfinite(loss) and math.isfinite(grad_norm)
            what = ("update discarded" if self.discarded
                    else "update applied" if finite else "train.nan_action decides the update")
            self.logger.warning("step %d: spike (%s); %s", step, "; ".join(verdict.reasons), what)
            if verdict.new_level:
                self.logger.warning("step %d: %d spikes in a row (monitor.spike.consecutive): treated as a new level, "
                                    "the running median restarts", step, self.m.spike.consecutive)
        return {"spike": int(verdict.spike), "spikes": self.spikes.total}  # 0/1: a number for plots and TensorBoard

    def record_fields(self, tokens_per_s: float, step_fn) -> dict:
        out: dict = {}
        if self.m.peak_memory:
            from mft.monitor.system_metrics import device_peak_mb, peak_rss_mb

            out["peak_memory_mb"] = peak_rss_mb()
            dev = device_peak_mb() if self.cfg.run.device != "CPU" else None
            if dev is not None:
                out["device_peak_memory_mb"] = dev
        if self.mfu is not None:
            out["mfu"] = self.mfu.mfu(tokens_per_s)
        if self.gate:
            out["update_skipped"] = int(self.discarded)
        if self.m.layer_norms:
            sq = getattr(step_fn, "last_grad_sq", None)
            if sq is not None:
                out.update({f"grad_norm/{g}": v for g, v in grouped_norms(self.names, sq).items()})
            wsq = [float(np.square(p.asnumpy().astype(np.float64)).sum()) for p in self.params]
            out.update({f"weight_norm/{g}": v for g, v in grouped_norms(self.names, wsq).items()})
        if self.m.optimizer_state_norm:
            kinds: dict[str, float] = {}
            for name, t in step_fn.optimizer.state_tensors().items():
                a = t.asnumpy()
                if a.ndim == 0 or name.endswith("step"):  # counters, not state vectors
                    continue
                kind = name.split(".", 1)[0]  # exp_avg, exp_avg_sq, momentum, ...
                kinds[kind] = kinds.get(kind, 0.0) + float(np.square(a.astype(np.float64)).sum())
            out["optimizer_state_norm"] = math.sqrt(sum(kinds.values()))
            out.update({f"optimizer_state_norm/{k}": math.sqrt(v) for k, v in kinds.items()})
        return out

    def is_eval_step(self, step: int, last_step: int) -> bool:
        return self.validator is not None and (step % self.m.eval_every == 0 or step == last_step)

    def validate(self, step: int) -> dict:
        res = self.validator.run()
        self.logger.info("step %d val_loss %.4f val_ppl %.2f", step, res["val_loss"], res["val_ppl"])
        return res
