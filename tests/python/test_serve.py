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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def post_raw(url, data: bytes):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
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
                             "--max-num-seqs", "4", "--block-size", "8", "--max-model-len", str(MAX_LEN), *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while True:
        if proc.poll() is not None:
            log.close()
            raise AssertionError(f"mft serve exited {proc.returncode}: {open(log.name).read()[-3000:]}")
        if _healthy(base):
            return proc, base, log
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("mft serve did not become healthy in 240 s")
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
    proc, base, log = start_server(folder)
    try:
        yield base
    finally:
        stop_server(proc, log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", timeout=120, max_retries=0)


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
    assert [m.id for m in models] == ["tiny-llama"]
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
    req = urllib.request.Request(server + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
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
