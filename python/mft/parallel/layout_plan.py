"""The configured parallel layout as one object the trainer drives (`mft train`).

`LayoutPlan(cfg, groups)` holds every per-layout decision that `training/trainer.py` used to branch on:

- `building()`: the build contexts (tensor / sequence parallel layers, this rank's experts, context-parallel
  attention), so `build_model` inside it makes this rank's pieces;
- `bind(model)`: what the built model holds (tp and ep sizes) and whether saving is a collective;
- `stage()` (after the weights are loaded): the pipeline stage under pp > 1 and the trainable parameters;
- `optimizer()`, `train_step(...)`: ZeRO's sharded AdamW or the plain one; the 1F1B pipeline step or
  `TrainStep`, each with the gradient reducer of the layout (expert-parallel, context-parallel, data-parallel);
- `shard_optimizer_state(saved)`: a full (single-process format) optimizer state -> this rank's pieces;
- `gather_for_save(step_fn)`: (parameters, optimizer state) as full tensors, so rank 0 writes the folder a
  single process writes (tp / ep all-gathers, ZeRO's shard gather, the pipeline stages' broadcasts);
- `load_folder(folder)`: a checkpoint folder's weights into this rank's pieces (rollback);
- `numel`, `describe(step_fn)`: the whole model's parameter count and the log lines of what this rank holds.
"""

from __future__ import annotations

import contextlib

from mft.parallel import context_parallel as cpar
from mft.parallel import expert_parallel as epar
from mft.parallel import tensor_parallel as tpar
from mft.parallel.data_parallel import DataParallel


class LayoutPlan:
    def __init__(self, cfg, groups):
        self.cfg = cfg
        self.groups = groups
        self.dp = DataParallel(groups.dp)
        self.model = None
        self.pipe = None
        self.params = None
        self.tp_size = 1
        self.ep_size = 1

    @contextlib.contextmanager
    def building(self):
        """Models built inside hold this rank's pieces: tp > 1 (sp: sequence-split norms), ep's experts, cp's attention."""
        g = self.groups
        with tpar.tensor_parallel(g.tp, self.cfg.parallel.sp), epar.expert_parallel(g.ep, g.dp):
            with cpar.context_parallel(g.cp, self.cfg.data.seq_len):
                yield

    def bind(self, model) -> None:
        self.model = model
        self.tp_size = tpar.tp_group_of(model).size
        self.ep_size = (epar.ep_group_of(model) or self.groups.ep).size if epar.expert_stacks(model) else 1

    @property
    def gather_save(self) -> bool:
        """Every rank calls save(): pieces are gathered into full tensors (a collective)."""
        p = self.cfg.parallel
        return self.tp_size > 1 or self.ep_size > 1 or p.zero > 0 or p.pp > 1

    def stage(self):
        """This rank's trainable parameters; under pp > 1 those of its pipeline stage (embedding / head at the ends)."""
        from mft.parallel.pipeline import pipeline_for

        self.pipe = pipeline_for(self.cfg, self.model, self.groups)
        self.params = self.pipe.params if self.pipe else self.model.trainable_params()
        return self.params

    def optimizer(self):
        """ZeRO-1/2: AdamW's state sharded over the dp group (mft.parallel.zero); else train.optimizer as built
        for one process (validates param_groups against the model: before any write)."""
        if self.cfg.parallel.zero:
            from mft.parallel.zero import build_optimizer as build_zero_optimizer

            return build_zero_optimizer(self.cfg, self.params, self.groups.dp, self.model)
        from mft.training.optim import build_optimizer

        return build_optimizer(self.cfg.train.optimizer, self.params, self.cfg.run.device)  # device: train.optimizer.fused=null

    def grad_reducer(self):
        """ep: dense grads' dp mean, expert stacks' edp sum / dp; else cp sum then dp mean (each a no-op at size 1)."""
        g, params = self.groups, self.params
        return epar.grad_reducer(self.model, params, g.dp, g.edp) or cpar.grad_reducer(g.cp, params, self.dp.grad_reducer(params))

    def train_step(self, step_model, optimizer, monitor, loss_scale, loss_factory):
        tc = self.cfg.train
        jit = self.cfg.run.mode == "graph"
        if self.pipe:
            return self.pipe.train_step(optimizer, tc.clip_grad_norm, tc.grad_accum_steps, jit, self.grad_reducer())
        from mft.training.train_step import TrainStep

        return monitor.step_class(TrainStep)(step_model, optimizer, tc.clip_grad_norm, tc.grad_accum_steps, jit=jit,
                                             grad_reducer=self.grad_reducer(), loss_scale=loss_scale, loss_factory=loss_factory)

    def describe(self, step_fn) -> list[str]:
        """Log lines: what this rank holds (ZeRO's shard, its pipeline stage, its experts)."""
        lines = []
        if self.cfg.parallel.zero:
            lines.append(f"zero: {step_fn.optimizer.describe(step_fn)}")
        if self.pipe:
            lines.append(self.pipe.describe())
        if self.ep_size > 1:
            lines.append(epar.describe(self.model))
        return lines

    @property
    def numel(self) -> int:
        """The whole model's trainable parameter count, also under tp / pp / ep."""
        if self.pipe:
            return self.pipe.model_numel
        return epar.global_numel(self.model, self.params, tpar.global_numel(self.model, self.params))

    def shard_optimizer_state(self, saved: dict) -> dict:
        """Full optimizer-state arrays (a checkpoint's) -> this rank's tp pieces and experts."""
        model = self.model
        return epar.shard_values(model, tpar.shard_values(model, saved, tpar.state_param_name), tpar.state_param_name)

    def gather_for_save(self, step_fn) -> tuple[dict | None, dict]:
        """(full parameter values or None = the model's own, full optimizer state); a collective under gather_save."""
        if self.pipe:  # every stage broadcasts its parameters and state over pp (ep stacks gathered first)
            return self.pipe.gather_full(step_fn.state_tensors())
        from mft.parallel.zero import full_state  # parallel.zero: the dp shards gathered (every rank calls save)

        model = self.model
        opt_state = full_state(step_fn)
        values = None
        if self.tp_size > 1:
            values = tpar.gather_full(model, {p.name: p.asnumpy() for p in model.get_parameters()})
            opt_state = tpar.gather_full(model, opt_state, tpar.state_param_name)
        if self.ep_size > 1:  # expert stacks all-gathered over the ep group
            values = epar.gather_values(model, {p.name: p.asnumpy() for p in model.get_parameters()})
            opt_state = epar.gather_values(model, opt_state, tpar.state_param_name)
        return values, opt_state

    def load_folder(self, folder: str) -> None:
        """A checkpoint folder's weights into this rank's pieces (pp: the other stages stay released)."""
        if self.pipe:
            self.pipe.load_folder(folder)
            return
        from mft.training.model_factory import load_weights_from_folder

        load_weights_from_folder(self.model, folder)
