"""`mft eval` (perplexity, multiple choice) checked against independent numpy
computations, and `mft compare` naming a planted error."""

import json
import math
import os
import shutil

import numpy as np
import pytest

import mindspore as ms

from mft.cli.main import main as mft_main
from mft.errors import MftError
from mft.eval.data import parse_mc_item, read_documents, read_mc_items
from mft.eval.mc import build_rows, encode_pair, fewshot_prefixes, mc_metrics
from mft.eval.ppl import score_documents
from mft.eval.scorer import RowScore, TokenScorer
from mft.eval.windows import sliding_windows
from mft.models import AutoModelForCausalLM

ms.set_device("CPU")
ms.runtime.launch_blocking()  # as `mft generate`/`mft eval` do: PyNative reference forwards ~30x faster on a busy CPU
HERE = os.path.dirname(__file__)
FIXTURE = os.path.join(HERE, "..", "fixtures", "hf", "llama")
ROOT = os.path.join(HERE, "..", "..")
SAMPLE = os.path.join(ROOT, "data", "eval", "kjv_next_verse.jsonl")
KJV = os.path.join(ROOT, "data", "kjv", "kjv.jsonl")


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURE, "reference.npz"))


def log_softmax64(logits):
    x = np.asarray(logits, np.float64)
    top = x.max(-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(-1, keepdims=True))


def eager_logits(model, ids):
    """One unpadded PyNative forward of one sequence -> (S, V) float64."""
    return model(ms.Tensor(np.asarray(ids, np.int32)[None], ms.int32)).asnumpy()[0].astype(np.float64)


# ---- sliding windows ---------------------------------------------------------

def hf_recipe(n, max_length, stride):
    """Hugging Face's loop spelled out: per window, labels -100 except the last trg_len,
    the model shifts labels by one. -> list of (begin, end, scored document indices)."""
    out, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        labels = list(range(begin, end))
        labels = [-100] * (len(labels) - trg_len) + labels[len(labels) - trg_len:]
        scored = [t for t in labels[1:] if t != -100]  # the shift: position 0's label is never used
        out.append((begin, end, scored))
        prev_end = end
        if end == n:
            break
    return out


@pytest.mark.parametrize("max_length", [2, 3, 5, 8])
def test_windows_follow_hf_recipe_and_score_each_token_once(max_length):
    for n in range(0, 30):
        for stride in range(1, max_length + 1):
            got = sliding_windows(n, max_length, stride)
            want = [(b, e, s) for b, e, s in hf_recipe(n, max_length, stride) if s]
            assert [(w.begin, w.end, list(range(w.first_scored, w.end))) for w in got] == want
            scored = [t for w in got for t in range(w.first_scored, w.end)]
            if stride < max_length:
                assert scored == list(range(1, n))  # first token never, every other exactly once
            else:  # disjoint windows: as in HF's recipe, a window's first token has no context and is not scored
                assert scored == [t for t in range(1, n) if t % max_length]
            assert all(w.end - w.begin <= max_length and w.first_scored > w.begin for w in got)


def test_window_arguments_are_checked():
    with pytest.raises(MftError, match="--stride=9"):
        sliding_windows(20, 8, 9)
    with pytest.raises(MftError, match="--max-length=1"):
        sliding_windows(20, 1, 1)


# ---- perplexity against the HF reference logits ------------------------------------

def test_ppl_of_short_and_exact_window_documents_matches_reference_logits(model, reference):
    ids = reference["input_ids"]
    lp = log_softmax64(reference["logits"])  # transformers' own logits
    docs = [ids[0].tolist(), ids[1, :20].tolist(), ids[1, :1].tolist()]  # exactly the window, shorter, one token
    nll = [-sum(lp[0, t - 1, ids[0, t]] for t in range(1, 24)), -sum(lp[1, t - 1, ids[1, t]] for t in range(1, 20))]
    r = score_documents(TokenScorer(model, batch_size=4, max_length=24), docs, max_length=24, stride=12)
    assert r["tokens"] == 23 + 19 and r["windows"] == 2 and r["scored_documents"] == 2 and r["documents"] == 3
    assert np.allclose(r["doc_nll"][:2], nll, rtol=1e-6, atol=1e-4) and r["doc_nll"][2] == 0
    assert math.isclose(r["mean_nll"], sum(nll) / 42, rel_tol=1e-6)
    assert math.isclose(r["ppl"], math.exp(sum(nll) / 42), rel_tol=1e-5)


@pytest.mark.parametrize("stride", [3, 10])
def test_ppl_of_long_document_matches_hf_recipe_window_by_window(model, reference, stride):
    doc = reference["input_ids"][0].tolist()  # 24 tokens, window 10: three or more windows
    nll, count = 0.0, 0
    for begin, end, scored in hf_recipe(len(doc), 10, stride):
        lp = log_softmax64(eager_logits(model, doc[begin:end]))
        if begin == 0:  # the first window is a prefix: transformers' logits apply
            assert np.abs(lp - log_softmax64(reference["logits"][0, :end])).max() < 1e-4
        nll -= sum(lp[t - begin - 1, doc[t]] for t in scored)
        count += len(scored)
    r = score_documents(TokenScorer(model, batch_size=4, max_length=10), [doc, doc[:7]], max_length=10, stride=stride)
    assert r["doc_tokens"] == [count, 6] and count == (23 if stride < 10 else 21)  # disjoint: 2 window starts unscored
    assert math.isclose(r["doc_nll"][0], nll, rel_tol=1e-6)
    assert r["windows"] == len(sliding_windows(24, 10, stride)) + 1


# ---- a model folder with a tokenizer that adds BOS ----------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mft.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("eval") / "model"
    shutil.copytree(FIXTURE, out)
    with open(KJV, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(30), f)]
    tok = Tokenizer.train(texts, vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], min_frequency=2)
    spec = json.loads(tok.to_str())
    bos = [{"SpecialToken": {"id": "<s>", "type_id": 0}}]
    spec["post_processor"] = {"type": "TemplateProcessing", "single": bos + [{"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": bos + [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    (out / "tokenizer.json").write_text(json.dumps(spec))
    return out


@pytest.fixture(scope="module")
def tokenizer(folder):
    from mft.tokenizer import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_cli_ppl_jsonl_bos_and_no_bos(folder, tokenizer, model, tmp_path, capsys):
    texts = ["And God said, Let there be light: and there was light.", "Jesus wept.", "",
             "In the beginning God created the heaven and the earth. " * 6]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"body": t}) + "\n" for t in texts))
    reference_scorer = TokenScorer(model, batch_size=1, max_length=16, jit=False)
    for flag, add in (([], True), (["--no-bos"], False)):
        out = tmp_path / f"ppl{len(flag)}.json"
        assert mft_main(["eval", "--model", str(folder), "--task", "ppl", "--data", str(data), "--field", "body",
                         "--max-length", "16", "--stride", "12", "--batch-size", "4", "--output", str(out)] + flag) == 0
        r = json.loads(out.read_text())
        ids = [tokenizer.encode(t, add_special_tokens=add) for t in texts]
        assert (ids[0][0] == tokenizer.bos_id) == add and r["bos"] is add and r["add_special_tokens"] is add
        assert r["task"] == "ppl" and r["documents"] == 4
        assert r["tokens"] == sum(max(len(i) - 1, 0) for i in ids)
        want = score_documents(reference_scorer, ids, 16, 12)  # PyNative, one row per forward
        assert r["windows"] == want["windows"] > len(texts) and r["compiled_shapes"] == [[4, 16]]
        assert math.isclose(r["mean_nll"], want["mean_nll"], rel_tol=1e-6) and math.isclose(r["ppl"], math.exp(r["mean_nll"]))
        assert "ppl" in capsys.readouterr().out


def test_cli_ppl_txt_is_one_document_and_errors_name_the_input(folder, tokenizer, tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("Jesus wept.\nAnd the LORD spake unto Moses, saying,\n")
    out = tmp_path / "t.json"
    assert mft_main(["eval", "--model", str(folder), "--task", "ppl", "--data", str(txt), "--max-length", "16",
                     "--batch-size", "4", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["documents"] == 1 and r["tokens"] == len(tokenizer.encode(txt.read_text())) - 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    assert mft_main(["eval", "--model", str(folder), "--task", "ppl", "--data", str(bad)]) == 2
    assert f"{bad}:2: no field 'text'" in capsys.readouterr().err
    assert mft_main(["eval", "--model", str(folder), "--task", "ppl", "--data", str(txt), "--max-length", "64", "--stride", "65"]) == 2
    assert "--stride=65" in capsys.readouterr().err
    assert mft_main(["eval", "--model", str(folder), "--task", "ppl", "--data", str(txt), "--max-length", "4096"]) == 2
    assert "max_position_embeddings=256" in capsys.readouterr().err


# ---- multiple choice -----------------------------------------------------------------

def test_mc_layouts_and_bad_items(tmp_path):
    a = parse_mc_item({"ctx": "A man", "endings": ["x", "y"], "label": "1"}, "f:1")
    assert (a.context, a.choices, a.label) == ("A man", ["x", "y"], 1)
    b = parse_mc_item({"question": "2+2?", "choices": ["3", "4", "5"], "answer": "B"}, "f:2")
    assert (b.context, b.label) == ("Question: 2+2?\nAnswer:", 1)
    c = parse_mc_item({"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "D"}, "f:3")
    assert (c.choices, c.label) == (["a", "b", "c", "d"], 3)
    for obj, msg in [({"context": "c", "choices": ["a", "b"], "label": 2}, "'label'=2 is not one of the 2 choices"),
                     ({"context": "c", "choices": ["a"], "label": 0}, "at least 2 strings"),
                     ({"choices": ["a", "b"], "label": 0}, "no context"),
                     ({"context": "c", "choices": ["a", "b"]}, "no answer")]:
        with pytest.raises(MftError, match=msg):
            parse_mc_item(obj, "f:9")
    p = tmp_path / "x.jsonl"
    p.write_text('{"context": "c", "choices": ["a", "b"], "label": 0}\nnot json\n')
    with pytest.raises(MftError, match=rf"{p}:2: not valid JSON"):
        read_mc_items(str(p))


def test_mc_metrics_acc_and_length_normalised_acc():
    items = [parse_mc_item({"context": "c", "choices": ["ab", "abcdefgh"], "label": 1}, "f:1"),
             parse_mc_item({"context": "c", "choices": ["abc", "a"], "label": 0}, "f:2")]
    lls = [-4.0, -6.0, -3.0, -2.0]  # item 1: raw picks 0, per char 1 (-2 vs -0.75); item 2: raw 1, per char 0 (-1 vs -2)
    scores = [RowScore(np.array([v]), np.array([True])) for v in lls]
    m = mc_metrics(items, scores)
    assert (m["acc"], m["acc_norm"]) == (0.0, 1.0)
    assert [d["pred"] for d in m["details"]] == [0, 1] and [d["pred_norm"] for d in m["details"]] == [1, 0]


def test_mc_tokens_and_fewshot_are_deterministic(tokenizer):
    ctx, cont = encode_pair(tokenizer, "In the beginning ", "God created")
    assert ctx == tokenizer.encode("In the beginning", add_special_tokens=False)
    assert ctx + cont == tokenizer.encode("In the beginning God created", add_special_tokens=False)
    items = read_mc_items(SAMPLE)
    assert len(items) == 100 and all(len(i.choices) == 4 for i in items)
    p1, p2 = fewshot_prefixes(items, 2, seed=7), fewshot_prefixes(items, 2, seed=7)
    assert p1 == p2 and p1 != fewshot_prefixes(items, 2, seed=8)
    assert all(p.count("\n\n") == 2 and items[i].context not in p for i, p in enumerate(p1))


def test_cli_mc_on_bundled_sample_matches_independent_loglikelihoods(folder, tokenizer, model, tmp_path, capsys):
    out = tmp_path / "mc.json"
    assert mft_main(["eval", "--model", str(folder), "--task", "mc", "--data", SAMPLE, "--limit", "6", "--num-fewshot", "1",
                     "--max-length", "128", "--batch-size", "8", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["items"] == 6 and r["requests"] == 24 and r["bos"] is True
    items = read_mc_items(SAMPLE)
    prefixes = fewshot_prefixes(items, 1, 1234)
    for item, prefix, d in zip(items[:6], prefixes, r["details"]):
        want = []
        for choice in item.choices:  # unpadded, uncompiled forward of BOS + context + " choice", cut to 128 from the left
            full = tokenizer.encode(prefix + item.context + " " + choice)
            n_cont = len(full) - len(tokenizer.encode(prefix + item.context))
            ids = full[-128:]
            lp = log_softmax64(eager_logits(model, ids))
            want.append(sum(lp[t - 1, ids[t]] for t in range(len(ids) - n_cont, len(ids))))
        assert np.allclose(d["loglikelihoods"], want, rtol=1e-5, atol=1e-3)
        assert d["pred"] == int(np.argmax(want))
        assert d["pred_norm"] == int(np.argmax(np.array(want) / [len(c) for c in item.choices]))
    assert r["acc"] == np.mean([d["pred"] == d["label"] for d in r["details"]])
    assert "acc_norm" in capsys.readouterr().out


# ---- mft compare -------------------------------------------------------------------------

def test_per_layer_path_reproduces_the_reference_logits(model, reference):
    from mft.eval.activations import collect

    acts = collect(model, reference["input_ids"][0])
    assert [n for n, _ in acts] == ["embed", "layer.0", "layer.1", "norm", "logits"]
    assert np.abs(dict(acts)["logits"] - reference["logits"][0]).max() < 1e-4


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The llama fixture with one weight of layer 1 perturbed."""
    from mft.weights.safetensors import load_file, save_file

    out = tmp_path_factory.mktemp("planted") / "model"
    shutil.copytree(FIXTURE, out)
    tensors = {k: np.array(v) for k, v in load_file(str(out / "model.safetensors")).items()}
    w = tensors["model.layers.1.mlp.down_proj.weight"]
    tensors["model.layers.1.mlp.down_proj.weight"] = w + np.random.default_rng(0).normal(0, 0.05, w.shape).astype(w.dtype)
    save_file(tensors, str(out / "model.safetensors"))
    return out


def test_compare_names_the_layer_with_a_planted_error_and_reads_dumps(planted, tmp_path, capsys):
    out, dump = tmp_path / "c.json", tmp_path / "a.npz"
    argv = ["compare", "--model", FIXTURE, "--model-b", str(planted), "--random-tokens", "20", "--seed", "3"]
    assert mft_main(argv + ["--dump", str(dump), "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    rel = {t["name"]: t["rel"] for t in r["tensors"]}
    assert r["first_divergence"] == "layer.1" and "first divergence (rel > 0.01): layer.1" in capsys.readouterr().out
    assert rel["embed"] == rel["layer.0"] == 0 and rel["layer.1"] > 0.01 and rel["logits"] > 0
    assert r["top1_agreement"] < 1 and r["kl_mean"] > 0
    # the dump of run A stands in for the model: same prompts, same numbers
    assert mft_main(["compare", "--model", str(dump), "--model-b", str(planted), "--output", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["tensors"] == r["tensors"] and again["first_divergence"] == "layer.1"


def test_compare_fp32_against_fp16_is_close_but_not_equal(tmp_path):
    out = tmp_path / "h.json"
    assert mft_main(["compare", "--model", FIXTURE, "--dtype-b", "float16", "--random-tokens", "20", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    rel = {t["name"]: t["rel"] for t in r["tensors"]}
    assert r["first_divergence"] is None and 0 < rel["logits"] < 1e-2
    assert r["top1_agreement"] >= 0.9 and 0 <= r["kl_mean"] < 1e-3
    assert r["runs"][1]["dtype"] == "float16"


def test_compare_bad_input_is_named(tmp_path, capsys):
    assert mft_main(["compare", "--model", FIXTURE, "--override-b", "fused_attention"]) == 2
    assert "--override-b 'fused_attention': expected KEY=VALUE" in capsys.readouterr().err
    assert mft_main(["compare", "--model", FIXTURE, "--random-tokens", "4", "--prompt", "x"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert mft_main(["compare", "--model", FIXTURE, "--prompt", "x"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
    assert mft_main(["compare", "--model", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: no such dump" in capsys.readouterr().err


def test_step_gradients_match_numpy_for_the_lm_head(model, reference):
    from mft.eval.activations import collect, gradients

    ids = reference["input_ids"][1]
    acts = dict(collect(model, ids))
    grads = dict(gradients(model, ids))
    assert list(grads) == ["grad.embed", "grad.layer.0", "grad.layer.1", "grad.norm", "grad.lm_head"]
    probs = np.exp(log_softmax64(acts["logits"][:-1]))
    probs[np.arange(len(ids) - 1), ids[1:]] -= 1  # d mean-CE / d logits, times n
    want = probs.T @ acts["norm"][:-1].astype(np.float64) / (len(ids) - 1)
    assert np.abs(grads["grad.lm_head"].reshape(want.shape) - want).max() < 1e-5


def test_compare_grads_flag_reports_gradient_divergence(planted, tmp_path, capsys):
    out = tmp_path / "g.json"
    assert mft_main(["compare", "--model", FIXTURE, "--model-b", str(planted), "--random-tokens", "12", "--grads",
                     "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    names = [t["name"] for t in r["tensors"]]
    assert names[-5:] == ["grad.embed", "grad.layer.0", "grad.layer.1", "grad.norm", "grad.lm_head"]
    assert r["first_divergence"] == "layer.1" and r["first_grad_divergence"] is not None
    assert "first gradient divergence" in capsys.readouterr().out


def test_cli_ppl_reads_an_indexed_dataset_as_stored_ids(model, reference, tmp_path):
    from mft.data.indexed import IndexedDatasetBuilder

    prefix = str(tmp_path / "docs")
    ids = reference["input_ids"]
    with IndexedDatasetBuilder(prefix, 512) as b:
        b.add_document(ids[0])
        b.add_document(ids[1, :16])
    out = tmp_path / "i.json"
    assert mft_main(["eval", "--model", FIXTURE, "--task", "ppl", "--data", prefix + ".idx", "--max-length", "16",
                     "--stride", "8", "--batch-size", "4", "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    want = score_documents(TokenScorer(model, batch_size=1, max_length=16, jit=False), [ids[0].tolist(), ids[1, :16].tolist()], 16, 8)
    assert r["tokens"] == 23 + 15 == want["tokens"] and r["bos"] is None and "as stored" in r["bos_rule"]
    assert math.isclose(r["mean_nll"], want["mean_nll"], rel_tol=1e-6)
