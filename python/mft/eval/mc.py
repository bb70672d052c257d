"""Multiple-choice log-likelihood scoring as lm-evaluation-harness does it.

Each choice is scored as the continuation " " + choice of the item's
context (few-shot examples before it): loglikelihood = sum of log p of the
continuation's tokens. `acc`: the choice with the highest loglikelihood is
the label. `acc_norm`: the highest loglikelihood / len(choice) (the choice
string's length in characters, as the harness's code computes it; for ASCII
text that is its byte length).

Tokens as the harness's `_encode_pair`: trailing whitespace of the context
moves to the continuation, the continuation's tokens are those of
encode(context + continuation) after encode(context).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mft.errors import MftError
from mft.eval.data import MCItem


def fewshot_prefixes(items: Sequence[MCItem], num_fewshot: int, seed: int, delimiter: str = " ", separator: str = "\n\n") -> list[str]:
    """The few-shot text before each item: num_fewshot other items (drawn with
    one numpy generator seeded with `seed`, item by item) with their gold answers."""
    if num_fewshot < 0:
        raise MftError(f"--num-fewshot={num_fewshot} must be >= 0")
    if num_fewshot == 0:
        return [""] * len(items)
    if num_fewshot >= len(items):
        raise MftError(f"--num-fewshot={num_fewshot} needs more than {num_fewshot} items in --data (it has {len(items)})")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(items)):
        pool = [j for j in range(len(items)) if j != i]
        shots = rng.choice(pool, size=num_fewshot, replace=False)
        out.append("".join(items[j].context + delimiter + items[j].choices[items[j].label] + separator for j in shots))
    return out


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list(tokenizer.encode(context + continuation, add_special_tokens=False))
    ctx = list(tokenizer.encode(context, add_special_tokens=False))
    return ctx, whole[len(ctx):]


def build_rows(tokenizer, items: Sequence[MCItem], prefixes: Sequence[str], max_length: int, bos_id: int | None,
               empty_context_id: int | None, delimiter: str = " "):
    """One scorer Row per (item, choice), in order; contexts cut from the left to fit max_length."""
    from mft.eval.scorer import Row

    rows = []
    for item, prefix in zip(items, prefixes):
        for c, choice in enumerate(item.choices):
            ctx, cont = encode_pair(tokenizer, prefix + item.context, delimiter + choice)
            if not cont:
                raise MftError(f"{item.where}: choice {c} encodes to no tokens")
            head = [bos_id] if bos_id is not None else ([] if ctx else [empty_context_id])
            if head == [None]:
                raise MftError(f"{item.where}: empty context and the tokenizer has neither a BOS nor an EOS token to start from")
            ids = (head + ctx + cont)[-max_length:]
            if len(cont) >= len(ids):
                raise MftError(f"{item.where}: choice {c} has {len(cont)} tokens, too many for --max-length={max_length}")
            rows.append(Row(ids, len(ids) - len(cont)))
    return rows


def mc_metrics(items: Sequence[MCItem], scores) -> dict:
    """scores: one RowScore per (item, choice) in build_rows' order."""
    k = 0
    hits, hits_norm, details = [], [], []
    for item in items:
        lls = np.array([scores[k + c].logprobs.sum() for c in range(len(item.choices))])
        greedy = [bool(scores[k + c].greedy.all()) for c in range(len(item.choices))]
        k += len(item.choices)
        lengths = np.array([max(len(ch), 1) for ch in item.choices], dtype=np.float64)
        pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
        hits.append(pred == item.label)
        hits_norm.append(pred_norm == item.label)
        details.append({"where": item.where, "label": item.label, "pred": pred, "pred_norm": pred_norm,
                        "loglikelihoods": lls.tolist(), "is_greedy": greedy})
    n = len(items)

    def stderr(x):
        p = float(np.mean(x))
        return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")

    return {
        "items": n,
        "acc": float(np.mean(hits)),
        "acc_stderr": stderr(hits),
        "acc_norm": float(np.mean(hits_norm)),
        "acc_norm_stderr": stderr(hits_norm),
        "chance": float(np.mean([1.0 / len(i.choices) for i in items])),
        "details": details,
    }
