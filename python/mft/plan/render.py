"""The plan as text for a terminal."""

from __future__ import annotations


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3f}{unit}" if unit == "B" else f"{n / size:.2f}{unit}"
    return str(int(n))


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def render(plan: dict, source: str) -> str:
    p, f, lay, mem = plan["params"], plan["flops_per_token"], plan["layout"], plan["memory"]
    lines = [f"{source}: {plan['arch']}, seq_len {plan['seq_len']}"]
    active = f", active {_count(p['active'])} per token" if p["active"] != p["model"] else ""
    trained = "in the model" if (plan.get("finetune") or {}).get("method") == "lora" else "trained"
    lines.append(f"parameters: {_count(p['total'])} {trained}" + (f" (model {_count(p['model'])} + MTP {_count(p['by_component']['mtp'])})" if p["by_component"].get("mtp") else "") + active)
    for name, n in p["by_component"].items():
        label = "attention (MLA)" if name == "attention" and plan["arch"] == "deepseek_v3" else name
        lines.append(f"  {label:<15} {_count(n):>10}  {100 * n / p['total']:5.1f}%")
    lines.append(f"FLOPs per token: train {f['train']:.3e} (forward {f['forward']:.3e}" + (f", MTP train {f['train_mtp']:.3e}" if f["train_mtp"] else "") + ")")
    lines.append("  = 6 x active matmul parameters + 6 x layers x heads x seq_len x (qk_head_dim + v_head_dim)")
    ft = plan.get("finetune") or {}
    if ft.get("method") == "lora":
        lines.append(f"finetune: lora r {ft['r']} on {ft['modules']} linear layers: {_count(ft['adapter_params'])} adapter parameters trained "
                     f"({100 * ft['adapter_params'] / ft['frozen_params']:.2f}% of the {_count(ft['frozen_params'])} frozen)"
                     + (f", + {_count(ft['modules_to_save_params'])} in modules_to_save trained in full" if ft.get("modules_to_save_params") else ""))
    lay_text = ", ".join(f"{k}={lay[k]}" for k in ("dp", "tp", "pp", "ep", "cp", "sp", "zero"))
    expert = f", expert data-parallel {lay['expert_dp']}" if lay["expert_dp"] else ""
    lines.append(f"layout: {lay_text} -> {lay['devices']} device{'s' if lay['devices'] > 1 else ''} (dp*tp*pp*cp){expert}")
    for problem in lay["problems"]:
        lines.append(f"  warning: {problem}")
    d = mem["per_device"]
    stage = f" (pipeline stage {d['stage']}, the largest)" if lay["pp"] > 1 else ""
    lines.append(
        f"memory per device{stage}: {mem['precision']}, {mem['optimizer']}, recompute {mem['recompute']}, "
        f"micro-batch {mem['micro_batch_size']} x {plan['seq_len']} tokens, {mem['grad_accum_steps']} micro-batches per step"
    )
    for key in ("weights", "gradients", "optimizer", "activations"):
        casts = f"  (fp32 parameters + {_gib(d['weight_casts'])} {mem['precision']} working copies)" if key == "weights" and d.get("weight_casts") else ""
        lines.append(f"  {key:<12} {_gib(d[key]):>12}{casts}")
    lines.append(f"  {'total':<12} {_gib(d['total']):>12}")
    return "\n".join(lines)
