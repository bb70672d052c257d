"""Sequence-level distillation data: a teacher answers prompts, a checker keeps the good answers.

`mft distill --teacher DIR --input PROMPTS.jsonl --output KEPT.jsonl` (cli/distill_cmd.py):

1. Prompts (`read_prompts`): each JSONL line is an SFT record in any shape
   `mft data preprocess --format sft` reads (OpenAI messages, ShareGPT,
   Alpaca): the prompt is the conversation before its last assistant reply,
   and that reply is the reference. `{"prompt": TEXT, "reference": TEXT?}`
   is a one-turn prompt.
2. Generation (`generate_responses`): every prompt is rendered with the chat
   template (`add_generation_prompt=True`), tokenized without special tokens
   (as `mft chat` and transformers do) and answered `num_samples` times by
   the teacher's batched `generate` (prompts of a batch are left-padded; the
   last batch is filled up with copies so every batch has one shape and the
   compiled decode step is built once). A response ends at the first stop id
   (eos, the config's eos ids, the template's end-of-turn token when the
   vocabulary has it) or at the first end-of-turn text (`<|im_end|>` spelled
   in pieces by a tokenizer without it); one that reaches `max_new_tokens`
   first is incomplete.
3. Filtering (`filter_responses`), in this order, each drop counted by reason:
   incomplete, empty, shorter than `min_tokens` / longer than `max_tokens`
   (the response's own tokens), a duplicate of a response already kept for
   the same prompt (after collapsing whitespace), one the `accept_regex`
   checker does not match whole, and with
   `match_reference` one whose prompt has no reference or that differs from
   it after stripping (rejection sampling with an exact checker). Exact match with the reference is counted for
   every response that has one, kept or not: the same command measures a
   model's exact match on a held-out set.
4. Output: one OpenAI-messages record per kept response (the prompt's
   messages + `{"role": "assistant", "content": response}`), written to a
   temporary name and renamed, ready for `mft data preprocess --format sft`
   and a packed `mft train` of the student.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mft.errors import MftError

DROP_REASONS = ("prompt too long", "incomplete", "empty", "too short", "too long", "duplicate", "rejected by checker", "no reference", "reference mismatch")


@dataclass
class Prompt:
    """One prompt: where it came from, the messages before the answer, and the reference answer (or None)."""

    line: int
    messages: list[dict]
    tools: list | None = None
    reference: str | None = None


@dataclass
class Response:
    """One teacher answer: its text, its token count, and whether it ended by itself (not at max_new_tokens)."""

    prompt: int
    text: str
    tokens: int
    complete: bool


@dataclass
class DistillStats:
    """Counts of one run: prompts, responses, kept, drops by reason, reference matches."""

    prompts: int = 0
    responses: int = 0
    kept: int = 0
    with_reference: int = 0
    reference_matches: int = 0
    skipped_bad: int = 0
    dropped: Counter = field(default_factory=Counter)

    @property
    def exact_match(self) -> float | None:
        """Reference matches / responses with a reference, or None when no prompt had a reference."""
        return self.reference_matches / self.with_reference if self.with_reference else None

    def as_dict(self) -> dict:
        """The counts as a JSON-ready dict (what --report writes)."""
        return {"prompts": self.prompts, "responses": self.responses, "kept": self.kept,
                "dropped": dict(sorted(self.dropped.items())), "skipped_bad": self.skipped_bad,
                "with_reference": self.with_reference, "reference_matches": self.reference_matches,
                "exact_match": self.exact_match}


def prompt_of(obj) -> tuple[list[dict], list | None, str | None]:
    """(messages, tools, reference) of one JSONL record; BadRecord with the reason otherwise."""
    from mft.data.sft import BadRecord, to_messages

    if isinstance(obj, dict) and "prompt" in obj:
        text, ref = obj["prompt"], obj.get("reference")
        if not isinstance(text, str) or not text.strip():
            raise BadRecord("'prompt' must be a non-empty string")
        if ref is not None and not isinstance(ref, str):
            raise BadRecord(f"'reference' is {type(ref).__name__}, not a string")
        return [{"role": "user", "content": text}], None, ref
    messages, tools = to_messages(obj)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    if not messages[:last]:
        raise BadRecord("nothing before the assistant reply to prompt with")
    return messages[:last], tools, messages[last].get("content")


def read_prompts(path: str, skip_bad: bool = False) -> tuple[list[Prompt], int]:
    """(prompts, bad records skipped) of a JSONL file; a bad record is an MftError naming file:line unless skip_bad."""
    from mft.data.sft import BadRecord

    prompts, bad = [], 0
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise MftError(f"--input {path}: cannot read: {e.strerror or e}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise BadRecord(f"malformed JSON: {e}") from None
                messages, tools, ref = prompt_of(obj)
            except BadRecord as e:
                if not skip_bad:
                    raise MftError(f"{path}:{n}: {e} (--skip-bad skips such records)") from None
                bad += 1
                continue
            prompts.append(Prompt(n, messages, tools, ref))
    if not prompts:
        raise MftError(f"--input {path}: no prompts")
    return prompts, bad


def _cut(text: str, markers) -> tuple[str, bool]:
    cut = min((i for i in (text.find(m) for m in markers) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def generate_responses(model, tokenizer, template: str, prompts: list[Prompt], *, num_samples: int = 1,
                       max_new_tokens: int = 128, batch_size: int = 16, temperature: float = 0.0, top_p: float = 1.0,
                       top_k: int = 0, seed: int = 0) -> tuple[list[Response], Counter]:
    """The teacher's responses (num_samples per prompt, in prompt order) and the prompts dropped before generation."""
    from mft.inference.chat import end_of_turn_strings, stop_ids_of
    from mft.tokenizer.chat_template import render, special_tokens_of

    if num_samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise MftError(f"num_samples ({num_samples}), max_new_tokens ({max_new_tokens}) and batch_size ({batch_size}) must be >= 1")
    specials = special_tokens_of(tokenizer)
    stop_ids = set(stop_ids_of(tokenizer, model.config))
    markers = end_of_turn_strings(template, specials)
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    dropped: Counter = Counter()
    jobs = []  # (prompt index, ids)
    for i, p in enumerate(prompts):
        text = render(template, p.messages, add_generation_prompt=True, tools=p.tools, special_tokens=specials)
        ids = [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
        if not ids or (limit and len(ids) + max_new_tokens > limit):
            dropped["prompt too long"] += num_samples
            continue
        jobs += [(i, ids)] * num_samples
    do_sample = temperature > 0
    out: list[Response] = []
    for b, start in enumerate(range(0, len(jobs), batch_size)):
        chunk = jobs[start:start + batch_size]
        rows = [ids for _, ids in chunk] + [chunk[-1][1]] * (batch_size - len(chunk))  # one batch shape throughout
        width = max(len(r) for r in rows)
        result = model.generate(rows, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                temperature=temperature if do_sample else 1.0, top_k=top_k, top_p=top_p,
                                eos_token_id=sorted(stop_ids) or None, seed=seed + b)
        result = np.asarray(result.asnumpy() if hasattr(result, "asnumpy") else result)
        for (i, _), row in zip(chunk, result[:, width:]):
            new = [int(t) for t in row]
            end = next((k for k, t in enumerate(new) if t in stop_ids), None)
            ids = new if end is None else new[:end]
            text, marked = _cut(tokenizer.decode(ids), markers)
            n = len(tokenizer.encode(text, add_special_tokens=False)) if marked else len(ids)
            out.append(Response(i, text, n, end is not None or marked))
    return out, dropped


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def filter_responses(prompts: list[Prompt], responses: list[Response], stats: DistillStats, *, min_tokens: int = 1,
                     max_tokens: int | None = None, dedup: bool = True, match_reference: bool = False,
                     accept_regex: str | None = None) -> list[dict]:
    """The kept conversations (OpenAI messages records); `stats` gets the counts.
    `accept_regex`: a checker every kept response must match whole (after stripping)."""
    try:
        checker = re.compile(accept_regex) if accept_regex is not None else None
    except re.error as e:
        raise MftError(f"--accept-regex {accept_regex!r} does not compile: {e}") from None
    kept, seen = [], set()
    for r in responses:
        p = prompts[r.prompt]
        stats.responses += 1
        matches = p.reference is not None and r.complete and r.text.strip() == p.reference.strip()
        if p.reference is not None:
            stats.with_reference += 1
            stats.reference_matches += int(matches)
        if not r.complete:
            reason = "incomplete"
        elif not r.text.strip():
            reason = "empty"
        elif r.tokens < min_tokens:
            reason = "too short"
        elif max_tokens is not None and r.tokens > max_tokens:
            reason = "too long"
        elif dedup and (r.prompt, _norm(r.text)) in seen:
            reason = "duplicate"
        elif checker is not None and checker.fullmatch(r.text.strip()) is None:
            reason = "rejected by checker"
        elif match_reference and p.reference is None:
            reason = "no reference"
        elif match_reference and not matches:
            reason = "reference mismatch"
        else:
            reason = None
        if reason:
            stats.dropped[reason] += 1
            continue
        seen.add((r.prompt, _norm(r.text)))
        record = {"messages": p.messages + [{"role": "assistant", "content": r.text.strip()}]}
        if p.tools:
            record["tools"] = p.tools
        kept.append(record)
    stats.kept = len(kept)
    return kept


def write_jsonl(path: str, records: list[dict]) -> None:
    """Records to `path` through a temporary name (an interrupted run leaves no half-written file)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def summary(stats: DistillStats, num_samples: int) -> str:
    """The lines `mft distill` prints."""
    drops = ", ".join(f"{k} {stats.dropped[k]}" for k in DROP_REASONS if stats.dropped.get(k))
    lines = [f"prompts {stats.prompts} ({stats.skipped_bad} bad skipped), responses {stats.responses} "
             f"({num_samples} per prompt), kept {stats.kept}" + (f"; dropped: {drops}" if drops else "")]
    if stats.with_reference:
        lines.append(f"exact match with the reference: {stats.reference_matches} of {stats.with_reference} "
                     f"responses ({100.0 * stats.exact_match:.1f}%)")
    return "\n".join(lines)
