"""Which special tokens an evaluation adds: the tokenizer's own rule, or none with --no-bos."""

from __future__ import annotations


def tokenizer_adds_bos(tokenizer) -> bool:
    """True when encode(text) (the file's post-processor) puts the BOS token first."""
    bos = tokenizer.bos_id
    if bos is None:
        return False
    with_special = list(tokenizer.encode("a", add_special_tokens=True))
    plain = list(tokenizer.encode("a", add_special_tokens=False))
    return len(with_special) > len(plain) and with_special[0] == bos and plain[:1] != [bos]


def special_token_info(tokenizer, no_bos: bool) -> dict:
    """What the output reports: whether a BOS is prepended and why."""
    adds = tokenizer_adds_bos(tokenizer)
    if no_bos:
        rule = "--no-bos: no special tokens added"
    elif adds:
        rule = "the tokenizer's post-processor adds BOS"
    else:
        rule = "the tokenizer's post-processor adds no BOS"
    bos_id = tokenizer.bos_id
    return {"bos": adds and not no_bos, "bos_token": None if bos_id is None else tokenizer.id_to_token(bos_id),
            "add_special_tokens": not no_bos, "bos_rule": rule}
