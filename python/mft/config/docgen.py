"""Writes docs/feature/configuration.md from the schema (every key: type, default, allowed values, meaning).

    python -m mft.config.docgen            # rewrite the page
    python -m mft.config.docgen --check    # exit 1 if the page is stale

The meaning of a key is the comment next to it in `mft/config/schema.py`
(on the same line, or the comment lines right above it); keys without one
take theirs from `MEANINGS` below. Allowed values come from
`schema.CHOICES`. Only the schema is imported: no MindSpore.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import sys
import tokenize
from typing import Any, Optional

from mft.config import schema

PAGE = os.path.join("docs", "feature", "configuration.md")
REGENERATE = "python -m mft.config.docgen"

# Meanings of keys that carry no comment in schema.py.
MEANINGS: dict[str, str] = {
    "run.output_dir": "folder the run writes: config.yaml, metrics.jsonl, logs/, tensorboard/, checkpoints/",
    "run.name": "run name: heads the log and the `mft report` title",
    "run.seed": "seed of the weight init and the data order",
    "run.device": "MindSpore device target; only CPU has been run here",
    "model.arch": "model family",
    "model.hidden_size": "hidden size",
    "model.intermediate_size": "MLP inner size",
    "model.num_layers": "decoder layers",
    "model.num_heads": "attention (query) heads",
    "model.max_position_embeddings": "longest sequence the position embedding is built for",
    "model.rope_theta": "RoPE base",
    "model.rms_norm_eps": "RMSNorm epsilon",
    "model.tie_word_embeddings": "share the input embedding with the LM head",
    "model.attention_bias": "bias on the attention projections (which ones follows the family's Hugging Face rule)",
    "model.mlp_bias": "bias on the MLP projections",
    "model.initializer_range": "std of the normal weight init",
    "model.num_experts_per_tok": "MoE: experts each token is routed to (top-k)",
    "model.topk_group": "deepseek_v3: groups kept by group-limited routing",
    "model.routed_scaling_factor": "deepseek_v3: routing weights are multiplied by this",
    "model.aux_loss_coef": "MoE: weight of the load-balancing loss",
    "model.router_z_loss_coef": "MoE: weight of the router z-loss",
    "model.q_lora_rank": "deepseek_v3 MLA: query down-projection rank (null: no query compression)",
    "model.kv_lora_rank": "deepseek_v3 MLA: key/value down-projection rank",
    "model.qk_nope_head_dim": "deepseek_v3 MLA: query/key head dims without RoPE",
    "model.qk_rope_head_dim": "deepseek_v3 MLA: query/key head dims with RoPE",
    "model.v_head_dim": "deepseek_v3 MLA: value head dim",
    "model.mtp_layers": "deepseek_v3: multi-token-prediction modules (training only)",
    "model.mtp_loss_coef": "deepseek_v3: weight of the MTP loss",
    "tokenizer.path": "a Hugging Face tokenizer.json",
    "data.seq_len": "tokens per training sample",
    "train.steps": "optimizer steps to run",
    "train.micro_batch_size": "global micro-batch (sequences); each dp rank reads 1/dp of it",
    "train.clip_grad_norm": "clip the global gradient norm to this (null: no clipping)",
    "train.optimizer.lr": "peak learning rate (> 0); the schedule scales it per step",
    "train.optimizer.betas": "(beta1, beta2), each in [0, 1)",
    "train.optimizer.eps": "> 0; added to sqrt(v) (AdamW)",
    "train.optimizer.weight_decay": "decoupled weight decay (>= 0)",
    "train.optimizer.muon.momentum": "mu in [0, 1): B <- mu B + G",
    "train.optimizer.muon.nesterov": "orthogonalise G + mu B (else B)",
    "train.lr_schedule.warmup_steps": "linear warmup steps, in [0, train.steps]",
    "train.lr_schedule.min_lr": "floor of the decay, in [0, lr]",
    "train.loss_scale.initial_scale": "starting loss scale",
    "train.loss_scale.growth_interval": "clean steps in a row before the scale grows",
    "train.loss_scale.min_scale": "the scale never drops below this",
    "parallel.dp": "data-parallel size",
    "parallel.tp": "tensor-parallel size (what trains today: docs/feature/parallel_training.md)",
    "parallel.pp": "pipeline-parallel size (what trains today: docs/feature/parallel_training.md)",
    "parallel.ep": "expert-parallel size (what trains today: docs/feature/parallel_training.md)",
    "parallel.cp": "context-parallel size (what trains today: docs/feature/parallel_training.md)",
    "parallel.sp": "sequence parallelism inside the tp group (what trains today: docs/feature/parallel_training.md)",
    "parallel.zero": "ZeRO optimizer-state sharding stage (what trains today: docs/feature/parallel_training.md)",
    "monitor.log_every": "write metrics.jsonl / TensorBoard every N steps",
    "monitor.progress_bar": "show a progress bar on the console",
    "monitor.tensorboard": "write TensorBoard event files under tensorboard/",
    "finetune.lora.r": "LoRA rank",
    "finetune.lora.alpha": "LoRA alpha (scaling alpha / r)",
    "finetune.lora.dropout": "dropout on the LoRA input",
}


def _comments(path: str) -> dict[int, str]:
    with open(path, encoding="utf-8") as f:
        src = f.read()
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _field_comments(path: str) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment beside or above the field."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    lines = src.splitlines()
    comments = _comments(path)
    out: dict[tuple[str, str], str] = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            parts = []
            line = item.lineno - 1
            above = []
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.append(comments.get(line, ""))
                line -= 1
            parts.extend(reversed(above))
            end = item.end_lineno or item.lineno
            for ln in range(item.lineno, end + 1):
                if ln in comments and not lines[ln - 1].strip().startswith("#"):
                    parts.append(comments[ln])
            text = " ".join(p for p in parts if p)
            if text:
                out[(node.name, item.target.id)] = text
    return out


def _type_name(annotation: Any) -> str:
    t = str(annotation).replace("typing.", "")
    if t.startswith("Optional[") and t.endswith("]"):
        return f"{t[len('Optional['):-1]} or null"
    if t == "Any":
        return "any"
    return t


def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"' if v == "" else v
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_value(x) for x in v) + "]"
    return repr(v)


def _rows(cls: type, prefix: str, comments: dict[tuple[str, str], str]) -> list[tuple[str, ...]]:
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default: Any
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        if dataclasses.is_dataclass(default):
            continue  # a sub-section: listed under its own heading
        choices: Optional[tuple] = schema.CHOICES.get(key)
        typ = _type_name(f.type)
        if choices:
            allowed = " \\| ".join(f"`{c}`" for c in choices)
        elif typ.startswith("bool"):
            allowed = "`true` \\| `false`"
        else:
            allowed = ""
        if typ.endswith("or null") and allowed:
            allowed += " \\| `null`"
        meaning = comments.get((cls.__name__, f.name)) or MEANINGS.get(key, "")
        shown = "required" if default is dataclasses.MISSING else f"`{_yaml_value(default)}`"
        rows.append((f"`{key}`", typ, shown, allowed, meaning.replace("|", "\\|")))
    return rows


def _sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    out = []
    for f in dataclasses.fields(cls):
        default: Any = None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        sub = default if dataclasses.is_dataclass(default) else None
        if sub is None and isinstance(f.type, str):
            sub_cls = getattr(schema, f.type, None)
            sub = sub_cls if dataclasses.is_dataclass(sub_cls) else None
        if sub is not None:
            sub_cls = sub if isinstance(sub, type) else type(sub)
            out.append((f"{prefix}{f.name}", sub_cls))
            out.extend(_sections(sub_cls, f"{prefix}{f.name}."))
    return out


def undescribed_keys() -> list[str]:
    """Keys that have neither a comment in schema.py nor an entry in MEANINGS."""
    comments = _field_comments(schema.__file__)
    missing = []
    for name, cls in _sections(schema.Config):
        for row in _rows(cls, name + ".", comments):
            if not row[4]:
                missing.append(row[0].strip("`"))
    return missing


def render() -> str:
    comments = _field_comments(schema.__file__)
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from python/mft/config/schema.py by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "A recipe is one YAML file validated against one schema",
        "(`python/mft/config/schema.py`). A file may start with `base: other.yaml`",
        "(its keys are read first, then this file's on top); `mft train CONFIG --set",
        "a.b=c` (and `mft plan`) overrides any key with a YAML-typed value. Unknown",
        "keys, wrong types and values outside the allowed ones are errors naming the",
        "file (or `--set`) and the key, with a \"did you mean\" hint for a misspelt",
        "key. Further range checks (lr > 0, warmup <= steps, keys of another",
        "optimizer or arch, ...) run when the recipe loads.",
        "",
        "`null` is YAML's none. A key marked *required* has no default.",
        "",
    ]
    for name, cls in _sections(schema.Config):
        out.append(f"## `{name}`")
        out.append("")
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(cls.__name__ + "("):
            out.append(doc.splitlines()[0])
            out.append("")
        rows = _rows(cls, name + ".", comments)
        if not rows:
            out.append("Only the sub-sections below.")
            out.append("")
            continue
        out.append("| key | type | default | allowed | meaning |")
        out.append("|---|---|---|---|---|")
        for row in rows:
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = argv[argv.index("--root") + 1] if "--root" in argv else os.getcwd()
    path = os.path.join(root, PAGE)
    text = render()
    if "--check" in argv:
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = ""
        if current != text:
            print(f"{path} is stale: run `{REGENERATE}` from the repository root", file=sys.stderr)
            return 1
        return 0
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
