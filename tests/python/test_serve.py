"""`mft serve` in its own process, driven by the official openai client over 127.0.0.1."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (requirements-dev.txt)")
pytest.importorskip("uvicorn", reason="mft serve needs uvicorn (requirements-dev.txt)")

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MAX_LEN = 96
API_KEY = "sk-test-mft"  # the module's server requires it on /v1 (--api-key), as vLLM's does
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post_raw(url, data: bytes, headers=AUTH):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mft.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("serve") / "tiny-llama"
    shutil.copytree(FIXTURE, folder)
    os.remove(folder / "reference.npz")
    corpus = ["In the beginning God created the heaven and the earth. And the earth was without form."] * 20
    tok = Tokenizer.train(corpus, vocab_size=300, min_frequency=1)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    return folder


def _healthy(base: str) -> bool:
    """True once the server answers /health with ok; False while it is not listening yet."""
    try:
        return get(base + "/health")["status"] == "ok"
    except (OSError, ValueError):
        return False


def start_server(folder, *extra):
    port = free_port()
    log = open(os.path.join(folder, f"server-{port}.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "mft", "serve", "--model", str(folder), "--port", str(port),
                             "--max-num-seqs", "4", "--block-size", "8", "--max-model-len", str(MAX_LEN),
                             "--max-num-batched-tokens", "16", *extra],  # 3 step graphs to compile at start-up
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 420  # start-up compiles the step graphs: minutes under a loaded CI
    while True:
        if proc.poll() is not None:
            log.close()
            raise AssertionError(f"mft serve exited {proc.returncode}: {open(log.name).read()[-3000:]}")
        if _healthy(base):
            return proc, base, log
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("mft serve did not become healthy in 420 s")
        time.sleep(0.5)


def stop_server(proc, log):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def server(folder):
    proc, base, log = start_server(folder, "--api-key", API_KEY, "--served-model-name", "tiny-llama", "tiny-alias")
    try:
        yield base
    finally:
        stop_server(proc, log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=API_KEY, timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def reference(folder):
    """Greedy continuations by model.generate, in this process."""
    import mindspore as ms

    ms.set_device("CPU")
    from mft.models import AutoModelForCausalLM
    from mft.tokenizer import Tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    stops = [model.config.eos_token_id] + ([tok.eos_id] if tok.eos_id is not None else [])

    def greedy(prompt_ids, n):
        out = model.generate([prompt_ids], max_new_tokens=n)[0, len(prompt_ids):].tolist()
        for i, t in enumerate(out):
            if t in stops:
                return out[:i], "stop"
        return out, "length"

    return tok, greedy


PROMPTS = ["In the beginning", "And the earth was", "God created the heaven and", "form"]


def test_models_and_health(server, client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-llama", "tiny-alias"]
    assert get(server + "/health")["status"] == "ok"


def test_completion_greedy_equals_generate(client, reference):
    tok, greedy = reference
    for prompt in PROMPTS[:2]:
        ids = tok.encode(prompt)
        out, reason = greedy(ids, 12)
        r = client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=12, temperature=0)
        assert r.choices[0].text == tok.decode(out) and r.choices[0].finish_reason == reason
        assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(out) + (reason == "stop")


def test_concurrent_requests_equal_alone(client, reference):
    tok, greedy = reference
    def one(prompt):
        return client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=10, temperature=0).choices[0].text
    with ThreadPoolExecutor(6) as pool:
        texts = list(pool.map(one, PROMPTS + PROMPTS[:2]))
    for prompt, text in zip(PROMPTS + PROMPTS[:2], texts):
        assert text == tok.decode(greedy(tok.encode(prompt), 10)[0])


def test_streaming_completion_and_usage_chunk(client, reference):
    tok, greedy = reference
    ids = tok.encode(PROMPTS[2])
    out, _ = greedy(ids, 12)
    chunks = list(client.completions.create(model="tiny-llama", prompt=PROMPTS[2], max_tokens=12, temperature=0, logprobs=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == tok.decode(out)
    # one chunk per token as it is sampled (text of a half-decoded character is held back until it completes)
    streamed = [len(c.choices[0].logprobs.tokens) for c in chunks if c.choices and c.choices[0].logprobs]
    assert len(streamed) == len(out) and set(streamed) == {1}
    assert chunks[-1].usage.prompt_tokens == len(ids) and not chunks[-1].choices


def test_n_seed_and_sampling(client):
    kw = dict(model="tiny-llama", prompt=PROMPTS[0], max_tokens=8, temperature=1.5, top_p=0.95, n=3, seed=11,
              extra_body={"top_k": 100, "min_p": 0.01, "repetition_penalty": 1.1, "ignore_eos": True})
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert len({c.text for c in a.choices}) > 1
    assert a.usage.completion_tokens == 24


def test_logprobs_and_echo_for_loglikelihood(client, folder, reference):
    """What lm-evaluation-harness's local-completions sends: token ids, echo, max_tokens=1, logprobs=1."""
    import mindspore as ms
    from mft.models import AutoModelForCausalLM

    tok, _ = reference
    ids = tok.encode("In the beginning God created")
    r = client.completions.create(model="tiny-llama", prompt=ids, max_tokens=1, temperature=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == len(ids) + 1 and lp.token_logprobs[0] is None
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    logits = model(ms.Tensor(np.asarray([ids]))).asnumpy()[0].astype(np.float64)
    ref = logits - logits.max(-1, keepdims=True)
    ref = ref - np.log(np.exp(ref).sum(-1, keepdims=True))
    for i in range(1, len(ids)):
        assert abs(lp.token_logprobs[i] - ref[i - 1, ids[i]]) < 1e-4
        assert len(lp.top_logprobs[i]) >= 1 and max(lp.top_logprobs[i].values()) == pytest.approx(ref[i - 1].max(), abs=1e-4)
    assert r.choices[0].text.startswith(tok.decode(ids))
    assert lp.text_offset[1] == len(lp.tokens[0])


def test_stop_strings(client, reference):
    tok, greedy = reference
    ids = tok.encode(PROMPTS[0])
    full = tok.decode(greedy(ids, 16)[0])
    stop = full[3:5]
    assert stop and stop in full
    r = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=16, temperature=0, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)] and r.choices[0].finish_reason == "stop"
    chunks = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=16, temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full[:full.index(stop)]


def test_chat_with_template_streaming_and_logprobs(client, reference):
    tok, greedy = reference
    messages = [{"role": "user", "content": "In the beginning"}]
    prompt = CHAT_TEMPLATE  # rendered by hand: the template is simple
    text = "<|user|>In the beginning\n<|assistant|>"
    out, _ = greedy(tok.encode(text, add_special_tokens=False), 10)
    r = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=10, temperature=0,
                                       logprobs=True, top_logprobs=2)
    assert prompt and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == tok.decode(out)
    assert len(r.choices[0].logprobs.content) == len(out) and len(r.choices[0].logprobs.content[0].top_logprobs) == 2
    chunks = list(client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=10, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == tok.decode(out)


def test_errors_are_openai_json(server, client):
    cases = [
        (dict(prompt="hi", max_tokens=4, temperature=-1), "temperature"),
        (dict(prompt="hi", max_tokens=4, top_p=2), "top_p"),
        (dict(prompt="hi", max_tokens=4, n=0), "n"),
        (dict(prompt="hi", max_tokens=MAX_LEN), "max_tokens"),
        (dict(prompt=[], max_tokens=4), "prompt"),
        (dict(prompt=[99999], max_tokens=4), "prompt"),
        (dict(prompt="hi", max_tokens=4, logprobs=50), "logprobs"),
    ]
    for kw, field in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tiny-llama", **kw)
        err = e.value.body
        assert e.value.status_code == 400 and err["param"] == field and field in err["message"], (kw, err)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny-llama", prompt="hi", max_tokens=MAX_LEN)
    assert e.value.body["code"] == "context_length_exceeded" and "maximum context length" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", messages=[], max_tokens=2)
    assert e.value.body["param"] == "messages"
    status, body = post_raw(server + "/v1/completions", b"{not json")
    assert status == 400 and "malformed JSON" in body["error"]["message"] and body["error"]["type"] == "invalid_request_error"
    status, body = post_raw(server + "/v1/completions", b"[1, 2]")
    assert status == 400 and body["error"]["param"] == "body"
    assert get(server + "/health")["running"] == 0  # nothing left behind


def test_client_disconnect_aborts_and_frees_blocks(server):
    body = json.dumps({"model": "tiny-llama", "prompt": "In the beginning", "max_tokens": MAX_LEN - 8, "temperature": 0,
                       "stream": True, "logprobs": 0, "ignore_eos": True}).encode()
    before = get(server + "/health")["aborted"]
    req = urllib.request.Request(server + "/v1/completions", data=body, headers={"Content-Type": "application/json", **AUTH})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.readline().startswith(b"data: ")  # the first token arrived; now hang up
    deadline = time.time() + 60
    while time.time() < deadline:
        health = get(server + "/health")
        if health["aborted"] > before and health["running"] == 0:
            break
        time.sleep(0.2)
    assert health["aborted"] == before + 1 and health["running"] == 0 and health["blocks_used"] == 0


def test_metrics_in_prometheus_format(server, client):
    from prometheus_client.parser import text_string_to_metric_families

    client.completions.create(model="tiny-llama", prompt=PROMPTS[1], max_tokens=5, temperature=0, extra_body={"ignore_eos": True})
    with urllib.request.urlopen(server + "/metrics", timeout=10) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    value = {s.name: s.value for f in families.values() for s in f.samples}
    assert value["mft_requests_running"] == 0 and value["mft_kv_cache_blocks_used"] == 0
    assert value["mft_kv_cache_blocks_total"] > 0
    assert value["mft_time_to_first_token_seconds_count"] >= 1 and value["mft_time_to_first_token_seconds_sum"] > 0
    assert value["mft_time_per_output_token_seconds_count"] >= 1
    assert value["mft_generation_tokens_total"] >= 5


def test_chat_without_template_is_a_clear_error(folder, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("tokenizer_config.json", "*.log"))
    proc, base, log = start_server(bare, "--no-warmup")
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", timeout=60, max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="bare", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert "chat template" in e.value.body["message"]
        assert client.completions.create(model="bare", prompt="In the", max_tokens=2, temperature=0).choices[0].text is not None
        # SIGTERM drains: a request in flight when the signal arrives still gets its whole answer.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.completions.create, model="bare", prompt="In the", max_tokens=60,
                                  temperature=0, extra_body={"ignore_eos": True})
            deadline = time.time() + 60
            while get(base + "/health")["running"] == 0 and time.time() < deadline and not pending.done():
                time.sleep(0.05)
            assert not pending.done()  # still generating when the signal arrives
            proc.terminate()
            done = pending.result(timeout=120)
        assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 60
        proc.wait(timeout=60)
        assert proc.returncode in (0, -15)  # uvicorn re-raises the captured SIGTERM after its graceful shutdown
    finally:
        stop_server(proc, log)


def test_cli_errors_are_one_line(folder):
    def serve(*argv):
        proc = subprocess.run([sys.executable, "-m", "mft", "serve", *argv], capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stderr
    code, err = serve("--model", FIXTURE)
    assert code == 2 and "tokenizer.json" in err and "Traceback" not in err
    code, err = serve("--model", str(folder), "--port", "70000")
    assert code == 2 and "--port=70000" in err
    code, err = serve("--model", str(folder), "--block-size", "6", "--no-warmup")
    assert code == 2 and "block_size=6" in err and "power of two" in err and "Traceback" not in err


# ---- what other OpenAI-compatible clients send (raw HTTP, SSE bytes, curl) ------------------------------
def sse_events(raw: bytes) -> list:
    """Server-sent events as OpenAI frames them: `data: <json>` blocks separated by a blank line, `data: [DONE]` last."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"" and blocks[-2] == b"data: [DONE]"
    events = []
    for block in blocks[:-2]:
        assert block.startswith(b"data: ") and b"\n" not in block, block
        events.append(json.loads(block[len(b"data: "):]))
    return events


@pytest.fixture(scope="module")
def http(server):
    httpx = pytest.importorskip("httpx", reason="raw HTTP checks use httpx (requirements-dev.txt)")
    with httpx.Client(base_url=server, headers=AUTH, timeout=120) as c:
        yield c


def stream_raw(http, path, body):
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return sse_events(b"".join(r.iter_bytes()))


def test_sse_framing_and_usage_chunks_as_openai(http):
    base = {"model": "tiny-llama", "prompt": PROMPTS[0], "max_tokens": 5, "temperature": 0, "stream": True, "ignore_eos": True}
    plain = stream_raw(http, "/v1/completions", base)
    assert plain and all("usage" not in e for e in plain)  # no include_usage: no usage anywhere
    assert len({e["id"] for e in plain}) == 1 and plain[0]["id"].startswith("cmpl-")
    assert all(e["object"] == "text_completion" and e["system_fingerprint"].startswith("fp_") and isinstance(e["created"], int)
               for e in plain)
    assert [e["choices"][0]["finish_reason"] for e in plain][-1] == "length"
    with_usage = stream_raw(http, "/v1/completions", {**base, "stream_options": {"include_usage": True}})
    *content, last = with_usage
    assert all(e["usage"] is None and len(e["choices"]) == 1 for e in content)  # "usage": null on every other chunk
    assert last["choices"] == [] and last["usage"] == {"prompt_tokens": len(http.post("/tokenize", json={"prompt": PROMPTS[0]}).json()["tokens"]),
                                                        "completion_tokens": 5, "total_tokens": last["usage"]["prompt_tokens"] + 5}
    assert "".join(e["choices"][0]["text"] for e in content) == "".join(e["choices"][0]["text"] for e in plain)
    continuous = stream_raw(http, "/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "In the"}],
                                                           "max_completion_tokens": 4, "temperature": 0, "stream": True, "ignore_eos": True,
                                                           "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    *content, last = continuous
    counts = [e["usage"]["completion_tokens"] for e in content]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 4 and last["choices"] == [] and last["usage"]["completion_tokens"] == 4
    assert all(e["object"] == "chat.completion.chunk" and e["id"].startswith("chatcmpl-") for e in continuous)
    r = http.post("/v1/completions", json={**base, "stream": False, "stream_options": {"include_usage": True}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


def test_chat_n_streaming_indices_and_seeded_equal_to_non_streamed(client):
    kw = dict(model="tiny-llama", messages=[{"role": "user", "content": "In the beginning"}], max_completion_tokens=6,
              temperature=1.3, n=3, seed=-5, stop=None, user="someone", extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**kw)
    assert [c.index for c in whole.choices] == [0, 1, 2] and whole.usage.completion_tokens == 18
    assert whole.id.startswith("chatcmpl-") and whole.system_fingerprint.startswith("fp_") and abs(whole.created - time.time()) < 600
    chunks = list(client.chat.completions.create(**kw, stream=True))
    texts, roles, finishes = ["", "", ""], [], []
    for c in chunks:
        (choice,) = c.choices
        if choice.delta.role:
            roles.append(choice.index)
            assert texts[choice.index] == ""  # the role comes first for each choice
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finishes.append((choice.index, choice.finish_reason))
    assert sorted(roles) == [0, 1, 2] and sorted(finishes) == [(0, "length"), (1, "length"), (2, "length")]
    assert texts == [c.message.content for c in whole.choices]  # a seed (negative too) repeats exactly, streamed or not


def test_logit_bias_max_completion_tokens_and_stop_forms(client, reference):
    tok, greedy = reference
    texts = {t: tok.decode([t], skip_special_tokens=False) for t in range(tok.vocab_size)}
    forced = next(t for t, text in texts.items()  # a plain (not special) token with a text of its own
                  if len(tok.decode([t]).strip()) > 2 and list(texts.values()).count(text) == 1)
    kw = dict(model="tiny-llama", prompt=PROMPTS[1], temperature=0, logprobs=0, extra_body={"ignore_eos": True})
    r = client.completions.create(max_tokens=4, logit_bias={str(forced): 100}, **kw)
    assert r.choices[0].logprobs.tokens == [texts[forced]] * 4 and r.choices[0].text == texts[forced] * 4
    # a -100 bias on the greedy token: another one is chosen, so a lower raw logprob is reported
    first = greedy(tok.encode(PROMPTS[1]), 1)[0]
    if first:
        plain = client.completions.create(max_tokens=1, **kw).choices[0].logprobs.token_logprobs[0]
        banned = client.completions.create(max_tokens=1, logit_bias={str(first[0]): -100}, **kw).choices[0].logprobs.token_logprobs[0]
        assert banned < plain
    for bias in ({"99999": 1}, {"x": 1}, {"5": 101}):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2, logit_bias=bias)
        assert e.value.body["param"] == "logit_bias"
    msgs = [{"role": "user", "content": "And the earth"}]
    r = client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=9, max_completion_tokens=3, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    full = client.chat.completions.create(model="tiny-llama", messages=msgs, max_completion_tokens=12, temperature=0).choices[0].message.content
    stop = full[2:4]
    for form in (stop, [stop, "zzzz"]):
        r = client.chat.completions.create(model="tiny-llama", messages=msgs, max_completion_tokens=12, temperature=0, stop=form)
        assert r.choices[0].message.content == full[:full.index(stop)] and r.choices[0].finish_reason == "stop"


def test_best_of_returns_the_best_mean_logprob(client):
    kw = dict(model="tiny-llama", prompt=PROMPTS[0], max_tokens=5, temperature=1.5, seed=3, extra_body={"ignore_eos": True})
    three = client.completions.create(n=3, logprobs=0, **kw)
    means = [sum(c.logprobs.token_logprobs) / 5 for c in three.choices]
    best = client.completions.create(n=1, best_of=3, **kw)
    assert len(best.choices) == 1 and best.choices[0].logprobs is None and best.choices[0].index == 0
    assert best.choices[0].text == three.choices[means.index(max(means))].text
    assert best.usage.completion_tokens == 15  # every generated sequence counts, as OpenAI bills best_of
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(n=1, best_of=2, stream=True, **kw)
    assert e.value.body["param"] == "best_of"


def test_output_changing_params_are_refused_not_ignored(client, http):
    msgs = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    cases = [("chat", dict(response_format={"type": "json_object"}), "response_format"),
             ("chat", dict(tools=[tool]), "tools"),
             ("chat", dict(tools=[tool], tool_choice="required"), "tools"),
             ("chat", dict(tool_choice={"type": "function", "function": {"name": "f"}}), "tool_choice"),
             ("chat", dict(extra_body={"functions": [{"name": "f", "parameters": {}}]}), "functions"),
             ("chat", dict(extra_body={"guided_json": {"type": "object"}}), "guided_json"),
             ("chat", dict(top_logprobs=2), "top_logprobs"),
             ("chat", dict(logprobs=True, top_logprobs=21), "top_logprobs"),
             ("completions", dict(suffix="end"), "suffix"),
             ("completions", dict(extra_body={"min_tokens": 3}), "min_tokens")]
    for kind, kw, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            if kind == "chat":
                client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=2, **kw)
            else:
                client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2, **kw)
        assert e.value.body["param"] == param and param in e.value.body["message"], (kw, e.value.body)
    # neutral values of the same fields are accepted (tool_choice "none": the tools go to the template, which here ignores them)
    plain = client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=3, temperature=0).choices[0].message.content
    r = client.chat.completions.create(model="tiny-alias", messages=msgs, max_tokens=3, temperature=0, tools=[tool], tool_choice="none",
                                       response_format={"type": "text"}, user="u1", metadata={"k": "v"}, store=False)
    assert r.choices[0].message.content == plain and r.model == "tiny-llama"
    assert client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2, suffix=None, best_of=1).choices


def test_batched_prompts_stream_echo_logprobs_like_non_stream(http, reference):
    tok, _ = reference
    prompts = [tok.encode("In the beginning"), tok.encode("And the earth was")]
    body = {"model": "tiny-llama", "prompt": prompts, "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 1, "n": 2}
    whole = http.post("/v1/completions", json=body).json()
    events = stream_raw(http, "/v1/completions", {**body, "stream": True})
    got = {}
    for e in events:
        (c,) = e["choices"]
        slot = got.setdefault(c["index"], {"text": "", "tokens": [], "token_logprobs": [], "text_offset": []})
        slot["text"] += c["text"]
        for key in ("tokens", "token_logprobs", "text_offset"):
            slot[key] += c["logprobs"][key]
    assert sorted(got) == [0, 1, 2, 3] and sorted(c["index"] for c in whole["choices"]) == [0, 1, 2, 3]
    for c in whole["choices"]:
        s = got[c["index"]]
        assert s["text"] == c["text"] and s["tokens"] == c["logprobs"]["tokens"] and s["text_offset"] == c["logprobs"]["text_offset"]
        assert s["token_logprobs"][0] is None and np.allclose(s["token_logprobs"][1:], c["logprobs"]["token_logprobs"][1:], atol=1e-5)
        p = c["index"] // 2
        assert c["logprobs"]["token_logprobs"][0] is None and len(c["logprobs"]["tokens"]) == len(prompts[p]) + 3
    # lm-eval's scoring form, streamed: max_tokens 0 -> the echoed prompt with its logprobs, nothing generated
    *events, last = stream_raw(http, "/v1/completions", {**body, "n": 1, "max_tokens": 0, "stream": True,
                                                          "stream_options": {"include_usage": True}})
    by_index = {i: [e["choices"][0] for e in events if e["choices"][0]["index"] == i] for i in (0, 1)}
    for i, choices in by_index.items():
        assert "".join(c["text"] for c in choices) == tok.decode(prompts[i]) and choices[-1]["finish_reason"] == "length"
        want = [c for c in whole["choices"] if c["index"] == 2 * i][0]["logprobs"]["token_logprobs"][:len(prompts[i])]
        got = [x for c in choices if c["logprobs"] for x in c["logprobs"]["token_logprobs"]]
        assert got[0] is None and len(got) == len(prompts[i]) and np.allclose(got[1:], want[1:], atol=1e-5)
    assert last["usage"]["completion_tokens"] == 0 and last["usage"]["prompt_tokens"] == sum(map(len, prompts))
    # string prompts are echoed as sent
    texts = [" In  the beginning", "form"]
    body = {"model": "tiny-llama", "prompt": texts, "max_tokens": 2, "temperature": 0, "echo": True}
    whole = sorted(http.post("/v1/completions", json=body).json()["choices"], key=lambda c: c["index"])
    assert [c["text"][:len(t)] for c, t in zip(whole, texts)] == texts
    streamed = ["", ""]
    for e in stream_raw(http, "/v1/completions", {**body, "stream": True}):
        streamed[e["choices"][0]["index"]] += e["choices"][0]["text"]
    assert streamed == [c["text"] for c in whole]


def test_models_by_name_vllm_extras_and_api_key(server, http, client, folder):
    assert http.get("/v1/models/tiny-alias").json()["id"] == "tiny-alias"
    r = http.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert http.get("/version").json()["version"] and http.get("/ping").status_code == 200 and http.post("/ping").status_code == 200
    msgs = [{"role": "user", "content": "In the"}]
    tokens = http.post("/tokenize", json={"messages": msgs, "return_token_strs": True}).json()
    assert http.post("/detokenize", json={"tokens": tokens["tokens"]}).json()["prompt"] == "<|user|>In the\n<|assistant|>"
    assert len(tokens["token_strs"]) == tokens["count"]
    bare = http.post("/tokenize", json={"messages": msgs, "add_generation_prompt": False, "chat_template_kwargs": {"x": 1}}).json()
    assert http.post("/detokenize", json={"tokens": bare["tokens"]}).json()["prompt"] == "<|user|>In the\n" and bare["token_strs"] is None
    r = http.post("/tokenize", json={"messages": msgs, "chat_template_kwargs": {"messages": []}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "chat_template_kwargs"
    # the key: /v1 needs it (401 in OpenAI's error shape), probes and the tokenizer endpoints do not (as vLLM)
    import httpx

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.get(server + "/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server + "/health").status_code == 200 and httpx.post(server + "/tokenize", json={"prompt": "x"}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    # CORS preflight (no key needed), and the allow-origin header on a real answer
    r = httpx.options(server + "/v1/chat/completions", headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST",
                                                                 "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert http.get("/v1/models", headers={"Origin": "http://example.test"}).headers["access-control-allow-origin"] == "*"
    r = httpx.get(server + "/v1/models", headers={"Origin": "http://example.test"})  # a browser can read the 401 too
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "*"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streaming_chat(server, reference):
    tok, greedy = reference
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "In the beginning"}], "max_tokens": 6, "temperature": 0,
            "stream": True}
    out = subprocess.run(["curl", "-sS", "-N", server + "/v1/chat/completions", "-H", "Content-Type: application/json",
                          "-H", f"Authorization: Bearer {API_KEY}", "-d", json.dumps(body)], capture_output=True, timeout=120, check=True)
    events = sse_events(out.stdout)
    want, _ = greedy(tok.encode("<|user|>In the beginning\n<|assistant|>", add_special_tokens=False), 6)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == tok.decode(want)
