"""Logit distillation (`finetune.distill`): the student learns the teacher's soft targets and the labels.

    loss = alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, labels)

with p = softmax(logits / T) over the vocabulary, KL summed over the
vocabulary and both terms averaged over the tokens whose label is not -100
(a loss mask's ignored tokens and packing's padding count in neither). T^2
keeps the soft term's gradient on the scale of the hard one as T grows
(Hinton et al., 2015).

The teacher (`finetune.distill.teacher`, a Hugging Face or mft model folder)
runs forward only: it is a frozen sub-cell of the loss cell, its logits go
through stop_gradient, so the compiled step builds no backward for it and
the optimizer never sees its parameters (they are renamed `teacher.*` so
they cannot collide with the student's). It computes in the student's
compute dtype. Checkpoints hold only the student.

`distill_loss_factory(cfg, model, compute_dtype)` builds the teacher and
checks it (same vocabulary size, a dense student, tp = 1) before anything is
written, and returns the `loss_factory` TrainStep takes (None without
distillation).
"""

from __future__ import annotations

import json
import os

import mindspore as ms
from mindspore import nn, ops

from mft.errors import MftError
from mft.training.loss import IGNORE_INDEX


def distill_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE; logits (B, S, V), labels (B, S) shifted."""
    vocab = student_logits.shape[-1]
    s = student_logits.reshape(-1, vocab).astype(ms.float32)
    t = teacher_logits.reshape(-1, vocab).astype(ms.float32)
    flat = labels.reshape(-1).astype(ms.int32)
    mask = (flat != IGNORE_INDEX).astype(ms.float32)
    count = ops.maximum(mask.sum(), 1.0)
    log_p = ops.log_softmax(s, -1)
    ce = -(ops.gather_elements(log_p, 1, ops.maximum(flat, 0).reshape(-1, 1)).reshape(-1) * mask).sum() / count
    log_ps = ops.log_softmax(s / temperature, -1)
    log_pt = ops.log_softmax(t / temperature, -1)
    kl = (ops.exp(log_pt) * (log_pt - log_ps)).sum(-1)
    kl = (kl * mask).sum() / count
    return alpha * temperature * temperature * kl + (1.0 - alpha) * ce


class DistillLoss(nn.Cell):
    """student + frozen teacher + distillation loss as one Cell (CausalLMLoss's place in the train step)."""

    def __init__(self, model: nn.Cell, teacher: nn.Cell, temperature: float, alpha: float):
        super().__init__(auto_prefix=False)  # parameter names stay the student's own
        self.model = model
        self.teacher = teacher
        self.moe = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def construct(self, input_ids, labels):
        logits = self.model(input_ids)
        teacher_logits = ops.stop_gradient(self.teacher(input_ids))
        return distill_loss(logits, teacher_logits, labels, self.temperature, self.alpha)


def _teacher_vocab(folder: str) -> int:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            hf = json.load(f)
    except OSError as e:
        raise MftError(f"finetune.distill.teacher: cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise MftError(f"finetune.distill.teacher: {path} is not valid JSON: {e}") from None
    text = hf.get("text_config") or hf
    if not isinstance(text.get("vocab_size"), int):
        raise MftError(f"finetune.distill.teacher: {path} has no vocab_size")
    return text["vocab_size"]


def check_settings(cfg) -> None:
    """Checks finetune.distill's temperature (> 0) and alpha (in [0, 1]); MftError naming the key otherwise."""
    d = cfg.finetune.distill
    if not (isinstance(d.temperature, (int, float)) and d.temperature > 0):
        raise MftError(f"finetune.distill.temperature must be > 0, got {d.temperature!r}")
    if not (isinstance(d.alpha, (int, float)) and 0.0 <= d.alpha <= 1.0):
        raise MftError(f"finetune.distill.alpha must be in [0, 1], got {d.alpha!r}")


def load_teacher(cfg, student, compute_dtype=None) -> nn.Cell:
    """The teacher model, frozen, checked against the student; its parameters renamed teacher.*."""
    folder = cfg.finetune.distill.teacher
    check_settings(cfg)
    if getattr(student, "num_moe_layers", 0) > 0:
        raise MftError("finetune.distill: a mixture-of-experts student is not supported yet (its loss carries the aux loss)")
    if getattr(student, "tp_size", 1) > 1:
        raise MftError("finetune.distill: parallel.tp > 1 is not supported yet (the teacher would need vocab-parallel logits)")
    if not os.path.isdir(folder):
        raise MftError(f"finetune.distill.teacher: {folder} is not a model folder")
    student_vocab = student.config.vocab_size
    teacher_vocab = _teacher_vocab(folder)
    if teacher_vocab != student_vocab:
        raise MftError(f"finetune.distill.teacher {folder} has a vocabulary of {teacher_vocab} tokens but the student "
                       f"({cfg.model.arch}, model.vocab_size / tokenizer.path) has {student_vocab}: distillation compares "
                       f"their distributions token by token, so both must use the same tokenizer")
    from mft.models import AutoModelForCausalLM
    from mft.training.precision import set_compute_dtype

    teacher = AutoModelForCausalLM.from_pretrained(folder)
    set_compute_dtype(teacher, compute_dtype)
    teacher.set_train(False)
    for p in teacher.get_parameters():
        p.requires_grad = False
        p.name = "teacher." + p.name
    return teacher


def distill_loss_factory(cfg, model, compute_dtype=None):
    """TrainStep's loss_factory for finetune.distill (None when no teacher is set)."""
    d = cfg.finetune.distill
    if not d.teacher:
        return None
    teacher = load_teacher(cfg, model, compute_dtype)
    return lambda student: DistillLoss(student, teacher, d.temperature, d.alpha)
