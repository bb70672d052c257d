"""`mft serve` on the tiny Qwen2.5-VL fixture: M-RoPE through the paged engine.

A prompt with images is prefilled (in chunks) at its M-RoPE positions and
every later token decodes at cache slot + delta. The greedy output must equal
the model's own `generate` (whose logits match transformers, test_qwen2_5_vl.py)
with both attention backends, with chunked prefill, beside a text request in
the same batch, after a preemption that recomputes the sequence, and through
the HTTP server with the openai client.
"""

import base64
import os
import shutil

import numpy as np
import pytest

from mft.models.auto import AutoModelForCausalLM, load_processor
from mft.serving import images as vision
from mft.serving.engine import LLMEngine
from mft.serving.sampling import SamplingOptions
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "vlm", "qwen2_5_vl")
RED = os.path.join(REPO, "data", "vlm", "images", "000_red_square.png")
OTHER = os.path.join(REPO, "tests", "fixtures", "vlm", "images", "c.png")
NEW_TOKENS = 8
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def parts():
    model = AutoModelForCausalLM.from_pretrained(FIXTURE)
    tok = Tokenizer.from_file(os.path.join(FIXTURE, "tokenizer.json"))
    proc = load_processor(FIXTURE, model.config, tok)
    images = [vision.load_image(p, p) for p in (RED, OTHER)]  # two sizes (two grids), RGB and RGBA: as the server reads them
    place = vision.placeholder_of(proc)
    text = f"<|im_start|>user\n{place}What is this? {place}<|im_end|>\n<|im_start|>assistant\n"
    ids, inputs = vision.encode_with_images(proc, tok, text, images)
    kw = inputs.kwargs
    out = model.generate(np.asarray([ids], np.int64), max_new_tokens=NEW_TOKENS, pixel_values=kw["pixel_values"],
                         image_grid_thw=kw["image_grid_thw"])
    out = np.asarray(out.asnumpy() if hasattr(out, "asnumpy") else out)
    expected = [int(t) for t in out[0][len(ids):]]
    return model, tok, ids, inputs, expected


def run(model, tok, ids, inputs, **engine_kw):
    # op by op (no decode graphs to compile: CI time); the HTTP test below runs the compiled decode
    engine = LLMEngine(model, tok, block_size=8, max_num_seqs=4, max_model_len=64, decode_mode="pynative", **engine_kw)
    opts = SamplingOptions(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
    text = engine.add_request(tok.encode("hello there, tell me", add_special_tokens=False), opts)
    image = engine.add_request(ids, opts, images=inputs)  # the later arrival: the one a preemption picks
    while engine.has_work():
        engine.step()
    return image.seqs[0].output, text.seqs[0].output, engine.stats()


def test_positions_are_m_rope(parts):
    model, tok, ids, inputs, expected = parts
    _, positions, delta = model.serving_prompt(np.asarray([ids]), **inputs.kwargs)
    assert positions.shape == (3, 1, len(ids))
    assert delta < 0  # image tokens share positions: the text after them counts on from fewer positions
    assert positions.max() + 1 - len(ids) == delta
    assert (positions[0] != positions[1]).any()  # height and width rows differ inside an image


def test_engine_equals_generate(parts):
    model, tok, ids, inputs, expected = parts
    assert len(expected) == NEW_TOKENS
    whole, text_whole, _ = run(model, tok, ids, inputs, attention_backend="composed")
    chunked, text_chunked, _ = run(model, tok, ids, inputs, attention_backend="fused", max_num_batched_tokens=12)
    assert whole == expected and chunked == expected
    assert text_whole == text_chunked


def test_preempted_image_prompt_recomputes_at_the_same_positions(parts):
    model, tok, ids, inputs, expected = parts
    # 7 + 2 blocks of 8 are needed for both sequences; 8 make the image request (later arrival) give way
    out, _, stats = run(model, tok, ids, inputs, num_blocks=9)
    assert stats["preemptions"] >= 1
    assert out == expected


def test_http_chat_with_images(parts, tmp_path):
    openai = pytest.importorskip("openai", reason="the openai client is a test dependency (requirements-dev.txt)")
    pytest.importorskip("uvicorn", reason="mft serve needs uvicorn (requirements-dev.txt)")
    from test_serve import start_server, stop_server  # same folder: tests/python

    model, tok, ids, inputs, expected = parts
    folder = tmp_path / "tiny-qwen2.5-vl"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("reference.npz", "cases.json"))
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    proc, base, log = start_server(folder, "--max-num-batched-tokens", "16", "--no-warmup")
    try:
        with open(RED, "rb") as f:
            red = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="tiny-qwen2.5-vl", temperature=0, max_tokens=NEW_TOKENS,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": red}},
                                                    {"type": "text", "text": "What is this? "},
                                                    {"type": "image_url", "image_url": {"url": OTHER}}]}])
        assert reply.usage.prompt_tokens == len(ids)  # the same expanded prompt as above
        n = reply.usage.completion_tokens
        assert n >= 1 and reply.choices[0].message.content == tok.decode(expected[:n])
    finally:
        stop_server(proc, log)
