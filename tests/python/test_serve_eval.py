"""`mft eval --serving` (load generator) and lm-evaluation-harness's request shapes against one real `mft serve`.

One server process for the module (the tiny llama fixture, a fresh BPE, a
chat template). Timings are measured but never asserted; the tests check
token counts, request outcomes and that percentiles are ordered.
"""

import json
import os
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("openai", reason="the openai client is a test dependency (requirements-dev.txt)")
pytest.importorskip("uvicorn", reason="mft serve needs uvicorn (requirements-dev.txt)")

from test_serve import CHAT_TEMPLATE, FIXTURE, MAX_LEN, get, start_server, stop_server  # noqa: E402

CORPUS = ["In the beginning God created the heaven and the earth. And the earth was without form, and void."] * 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mft.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("serve_eval") / "tiny-llama"
    shutil.copytree(FIXTURE, folder)
    os.remove(folder / "reference.npz")
    Tokenizer.train(CORPUS, vocab_size=300, min_frequency=1).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    return folder


def make_adapter(base, out, r, alpha, targets, seed):
    """A PEFT adapter with random (non-zero) A and B, and the merged folder `mft weights merge-lora` writes."""
    import mindspore as ms

    from mft.cli.merge_lora_cmd import merge_lora_folder
    from mft.finetune.lora import LoraSettings, apply_lora, lora_layers, save_adapter
    from mft.models import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(base))
    apply_lora(m, LoraSettings(r=r, alpha=alpha, target_modules=targets), seed=seed)
    rng = np.random.default_rng(seed)
    for cell in lora_layers(m).values():
        cell.lora_B.weight.set_data(ms.Tensor(rng.normal(0, 0.5, cell.lora_B.weight.shape).astype(np.float32)))
    save_adapter(m, str(out), str(base))
    merge_lora_folder(str(base), str(out), str(out) + "-merged")
    return out


@pytest.fixture(scope="module")
def adapters(folder):
    """Two adapters of different ranks, scalings and target modules (served as `a` and, named after its folder, `ad_b`)."""
    import mindspore as ms

    ms.set_device("CPU")
    a = make_adapter(folder, folder.parent / "ad_a", 4, 8, ["q_proj", "v_proj"], 1)
    b = make_adapter(folder, folder.parent / "ad_b", 2, 16, ["q_proj", "k_proj", "o_proj", "gate_proj", "down_proj"], 2)
    return {"a": a, "ad_b": b}


@pytest.fixture(scope="module")
def server(folder, adapters):
    proc, base, log = start_server(folder, "--adapter", f"a={adapters['a']}", "--adapter", str(adapters["ad_b"]))
    try:
        yield base
    finally:
        stop_server(proc, log)


@pytest.fixture(scope="module")
def tok(folder):
    from mft.tokenizer import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def model(folder):
    import mindspore as ms

    ms.set_device("CPU")
    from mft.models import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(folder))
    m.set_train(False)
    return m


def post(url, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def ordered(d):
    return d["p50"] <= d["p90"] <= d["p99"] and d["mean"] > 0


# ---- mft eval --serving ---------------------------------------------------------
def test_load_run_counts_tokens_and_orders_percentiles(server, tok, tmp_path, capsys):
    from mft.cli.main import main
    from mft.eval.load_requests import synthetic_requests

    out = tmp_path / "load.json"
    code = main(["eval", "--serving", server, "--concurrency", "1,3", "--num-requests", "4", "--prompt-len", "4:12",
                 "--max-tokens", "2:5", "--seed", "7", "--per-request", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "TTFT p50/p90/p99 ms" in table and "tiny-llama" in table
    result = json.loads(out.read_text())
    reqs = synthetic_requests(4, (4, 12), (2, 5), 7)
    want_out = sum(r.max_tokens for r in reqs)
    want_prompt = sum(len(tok.encode(r.prompt)) for r in reqs)
    assert result["model"] == "tiny-llama" and result["max_tokens_requested"] == want_out
    assert [r["concurrency"] for r in result["runs"]] == [1, 3]
    for run in result["runs"]:
        assert run["completed"] == 4 and run["errors"] == 0 and run["token_counts_from_usage"]
        assert run["output_tokens"] == want_out and run["prompt_tokens"] == want_prompt  # ignore_eos: lengths hold
        # mft streams one chunk per token: one inter-token gap per token after the first
        assert run["itl_ms"]["count"] == want_out - 4 and run["ttft_ms"]["count"] == 4
        for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
            assert ordered(run[key]), (key, run[key])
        assert run["ttft_ms"]["p50"] <= run["e2e_ms"]["p50"]
        assert run["output_throughput"] > 0 and run["request_throughput"] > 0
        for r, spec in zip(run["per_request"], reqs):
            assert r["ok"] and r["output_tokens"] == spec.max_tokens and 0 < r["ttft_s"] <= r["e2e_s"]
            assert len(r["itl_s"]) == spec.max_tokens - 1


def test_load_run_from_jsonl_chat_and_errors(server, tmp_path):
    from mft.cli.main import main

    mix = tmp_path / "mix.jsonl"
    lines = [{"prompt": "In the beginning", "max_tokens": 3},
             {"messages": [{"role": "user", "content": "And the earth"}], "max_tokens": 4},
             {"prompt": "God created", "max_tokens": MAX_LEN + 10}]  # over the context: a 400, counted as an error
    mix.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "mix.json"
    code = main(["eval", "--serving", server + "/v1", "--model", "tiny-llama", "--data", str(mix), "--num-requests", "3",
                 "--concurrency", "2", "--output", str(out)])
    assert code == 1  # a failed request fails the run
    run = json.loads(out.read_text())["runs"][0]
    assert run["completed"] == 2 and run["errors"] == 1 and run["output_tokens"] == 7
    assert "maximum context length" in run["error_samples"][0]
    # open loop: Poisson arrivals at 20/s, at most 2 in flight; every request completes with its lengths
    code = main(["eval", "--serving", server, "--data", str(mix), "--num-requests", "2", "--concurrency", "2",
                 "--request-rate", "20", "--output", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    assert code == 0 and run["request_rate"] == 20 and run["completed"] == 2 and run["output_tokens"] == 7
    assert main(["eval", "--serving", server, "--request-rate", "0"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "max_tokens": 0}\n')
    assert main(["eval", "--serving", server, "--data", str(bad)]) == 2


# ---- lm-evaluation-harness local-completions shapes ------------------------------
ITEMS = [("In the beginning God", ["created the heaven", "was without form", "void."]),
         ("And the earth was", ["without form, and void.", "the heaven", "In the beginning"]),
         ("", ["God created the heaven"])]  # empty context: the harness starts from its prefix token


def harness_requests(tok):
    """(context_enc, continuation_enc) as lm-eval's TemplateLM builds them (no special tokens; empty context -> the
    prefix token, here eos), and the scorer Rows mft eval builds from the same items."""
    from mft.eval.data import MCItem
    from mft.eval.mc import build_rows

    prefix = tok.eos_id if tok.eos_id is not None else 0
    items = [MCItem(ctx, choices, 0, f"item{i}") for i, (ctx, choices) in enumerate(ITEMS)]
    rows = build_rows(tok, items, [""] * len(items), MAX_LEN, None, prefix)
    pairs = [(list(r.ids[:r.first_scored]), list(r.ids[r.first_scored:])) for r in rows]
    return pairs, rows


def test_lm_eval_loglikelihood_shapes_match_mft_eval_scorer(server, tok, model):
    from mft.eval.scorer import TokenScorer

    pairs, rows = harness_requests(tok)
    scores = TokenScorer(model, batch_size=4, max_length=MAX_LEN, jit=False).score(rows)  # `--no-compile`: same numbers (test_eval)
    url = server + "/v1/completions"
    # The harness's loglikelihood payload, batched (batch_size=4): token-id lists, echo, one token, logprobs=1.
    for start in range(0, len(pairs), 4):
        batch = pairs[start:start + 4]
        payload = {"model": "tiny-llama", "prompt": [c + x for c, x in batch], "temperature": 0, "max_tokens": 1,
                   "logprobs": 1, "seed": 1234, "echo": True}
        out = post(url, payload)
        choices = sorted(out["choices"], key=lambda c: c["index"])
        assert len(choices) == len(batch)
        for (ctx, cont), choice, score in zip(batch, choices, scores[start:start + 4]):
            lp = choice["logprobs"]
            assert len(lp["token_logprobs"]) == len(ctx) + len(cont) + 1  # prompt echoed + the one generated token
            # the harness's parse_logprobs: sum over [ctxlen:-1], greedy when each equals the max of its top dict
            ll = sum(lp["token_logprobs"][len(ctx):-1])
            greedy = all(t == max(top.values()) for t, top in zip(lp["token_logprobs"][len(ctx):-1], lp["top_logprobs"][len(ctx):-1]))
            assert ll == pytest.approx(float(score.logprobs.sum()), abs=1e-4)
            assert greedy == bool(score.greedy.all())
    # max_tokens=0 with echo (other clients' form): exactly the prompt's entries, same numbers, nothing generated
    ctx, cont = pairs[0]
    out = post(url, {"model": "tiny-llama", "prompt": [ctx + cont], "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0})
    lp = out["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ctx) + len(cont) and lp["token_logprobs"][0] is None
    assert sum(lp["token_logprobs"][len(ctx):]) == pytest.approx(float(scores[0].logprobs.sum()), abs=1e-4)
    assert out["usage"]["completion_tokens"] == 0 and out["choices"][0]["text"] == tok.decode(ctx + cont)


def test_lm_eval_generate_until_shape(server, tok):
    """The harness's generate_until payload (token-id prompts in one batch, max_tokens, temperature 0, `until` + eos as
    stop, seed) answers what each prompt alone (a flat id list, no stop) answers, cut before the first stop string
    (greedy text itself equals model.generate: test_serve.py)."""
    url = server + "/v1/completions"
    contexts = [tok.encode("In the beginning", add_special_tokens=False), tok.encode("And the earth", add_special_tokens=False)]
    alone = [post(url, {"model": "tiny-llama", "prompt": ids, "max_tokens": 16, "temperature": 0})["choices"][0]["text"]
             for ids in contexts]
    # a stop string that surely cuts one answer: the first two ASCII letters in a row of either answer
    stop_here = next(full[i:i + 2] for full in alone for i in range(len(full) - 1) if full[i:i + 2].isascii() and full[i:i + 2].isalpha())
    eos = tok.decode([tok.eos_id], skip_special_tokens=False) if tok.eos_id is not None else None
    stop = ["\n\n", stop_here] + ([eos] if eos else [])
    out = post(url, {"prompt": contexts, "model": "tiny-llama", "max_tokens": 16, "temperature": 0, "stop": stop, "seed": 1234})
    texts = [None] * len(out["choices"])
    for c in out["choices"]:
        texts[c["index"]] = c["text"]
    cut = []
    for text, full in zip(texts, alone):
        i = min((full.find(s) for s in stop if s in full), default=len(full))
        cut.append(full[:i])
    assert texts == cut and any(len(t) < len(full) for t, full in zip(texts, alone))
    assert "stop" in [c["finish_reason"] for c in out["choices"]]
    # local-chat-completions: messages carry an extra "type": "text" key, stop is cut to 4 strings
    chat = {"messages": [{"role": "user", "content": "In the beginning", "type": "text"}], "model": "tiny-llama",
            "max_tokens": 6, "temperature": 0, "stop": stop[:4], "seed": 1234}
    plain = {"messages": [{"role": "user", "content": "In the beginning"}], "model": "tiny-llama", "max_tokens": 6, "temperature": 0}
    got, want = post(server + "/v1/chat/completions", chat), post(server + "/v1/chat/completions", plain)["choices"][0]["message"]["content"]
    i = min((want.find(s) for s in stop if s in want), default=len(want))
    assert got["choices"][0]["message"]["content"] == want[:i]
    assert get(server + "/health")["running"] == 0


def test_lm_eval_remote_tokenizer_endpoints(server, tok):
    """lm-eval's local-completions picks its `remote` tokenizer when GET /tokenizer_info has eos_token and POST /tokenize
    answers; it then encodes with /tokenize (add_special_tokens false), decodes with /detokenize and takes the eos id
    as the first token of encode(eos_token)."""
    info = get(server + "/tokenizer_info")
    assert "eos_token" in info and info["chat_template"] == CHAT_TEMPLATE
    text = "In the beginning God created the heaven"
    ids = post(server + "/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]
    assert ids == list(tok.encode(text, add_special_tokens=False))
    assert post(server + "/detokenize", {"tokens": ids})["prompt"] == tok.decode(ids, skip_special_tokens=False)
    if info["eos_token"] is not None:
        assert post(server + "/tokenize", {"prompt": info["eos_token"], "add_special_tokens": False})["tokens"][0] == tok.eos_id
    req = urllib.request.Request(server + "/detokenize", data=b'{"tokens": [-1]}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["param"] == "tokens"


# ---- LoRA adapters selected by `model` ---------------------------------------------
def greedy_ids(folder, ids, n):
    """Greedy continuation by full PyNative forwards of the model in `folder` (no cache, no engine)."""
    import mindspore as ms

    from mft.models import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(folder))
    out = []
    for _ in range(n):
        logits = m(ms.Tensor(np.asarray([ids + out], np.int32))).asnumpy()[0, -1]
        out.append(int(np.argmax(logits)))
    return out


def test_adapters_listed_and_equal_to_merged_models(server, adapters, tok):
    from concurrent.futures import ThreadPoolExecutor

    import openai

    models = get(server + "/v1/models")["data"]
    assert [m["id"] for m in models] == ["tiny-llama", "a", "ad_b"]
    assert [m["parent"] for m in models] == [None, "tiny-llama", "tiny-llama"]
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused", timeout=120, max_retries=0)
    prompts = [tuple(tok.encode(t, add_special_tokens=False)) for t in ("In the beginning", "And the earth was")]
    jobs = [("a", prompts[0]), ("ad_b", prompts[1]), ("tiny-llama", prompts[0]), ("tiny-llama", prompts[1])]

    def one(job):
        name, p = job
        r = client.completions.create(model=name, prompt=list(p), max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
        assert r.model == name and r.usage.completion_tokens == 6
        return r.choices[0].text

    with ThreadPoolExecutor(len(jobs)) as pool:  # base and both adapters in the same engine steps
        texts = dict(zip(jobs, pool.map(one, jobs)))
    for name, p in jobs[:2]:
        want = tok.decode(greedy_ids(str(adapters[name]) + "-merged", list(p), 6))
        assert texts[(name, p)] == want, (name, p)
        assert texts[(name, p)] != texts[("tiny-llama", p)]  # the adapter changes the answer
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="ad_c", prompt="In", max_tokens=2)
    assert "'a'" in e.value.body["message"] and "'ad_b'" in e.value.body["message"]


def test_bad_adapter_flags_are_one_line_errors(folder, adapters, capsys):
    from mft.cli.main import main

    for flag, words in ((f"x={folder}", "adapter_config.json"), ("=", "NAME=DIR"),
                        (f"tiny-llama={adapters['a']}", "base model")):
        argv = ["serve", "--model", str(folder), "--adapter", f"a={adapters['a']}", "--adapter", flag]
        if "base model" in words:
            argv = ["serve", "--model", str(folder), "--adapter", flag]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    assert main(["serve", "--model", str(folder), "--adapter", f"a={adapters['a']}", "--adapter", f"a={adapters['ad_b']}"]) == 2
    assert "given twice" in capsys.readouterr().err
