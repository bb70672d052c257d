"""`mft serve` on the tiny LLaVA fixture: chat messages with image_url parts, through the openai client.
The reply equals `mft generate --image` (greedy) on the same rendered prompt and image."""

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (requirements-dev.txt)")
pytest.importorskip("uvicorn", reason="mft serve needs uvicorn (requirements-dev.txt)")

from test_serve import get, start_server, stop_server  # noqa: E402  (same folder: tests/python)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "vlm", "llava")
RED = os.path.join(REPO, "data", "vlm", "images", "000_red_square.png")
OTHER = os.path.join(REPO, "tests", "fixtures", "vlm", "images", "c.png")
# bos_token first: the server tokenizes a rendered chat without added specials, mft generate adds <s> itself
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
QUESTION = "What is in the image?"
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_vlm") / "tiny-llava"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("reference.npz", "cases.json"))
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    # the prompt mft generate gets: the rendered chat without the <s> it adds itself
    prompt = f"<|user|><image>\n{QUESTION}\n<|assistant|>"
    gen = subprocess.Popen([sys.executable, "-m", "mft", "generate", "--model", str(folder), "--image", RED, "--prompt", prompt,
                            "--max-new-tokens", str(NEW_TOKENS), "--no-echo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # small prefill budget: the image prompt is prefilled in several chunks
    proc, base, log = start_server(folder, "--max-num-batched-tokens", "12", "--no-warmup")
    try:  # the server is stopped whatever happens below (a failed generate must not leave it running)
        out, err = gen.communicate(timeout=300)
        assert gen.returncode == 0, err[-2000:]
        yield {"base": base, "expected": out[:-1] if out.endswith("\n") else out, "folder": folder}
    finally:
        if gen.poll() is None:
            gen.kill()
        stop_server(proc, log)


def ask(base, url, **extra):
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
    return client.chat.completions.create(
        model="tiny-llava", temperature=0, max_tokens=NEW_TOKENS,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                {"type": "text", "text": "\n" + QUESTION}]}], **extra)


def test_image_chat_equals_generate_and_prefix_cache_keys_on_the_image(served):
    base = served["base"]
    with open(RED, "rb") as f:
        data_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    first = ask(base, data_url)
    assert served["expected"] and first.choices[0].message.content == served["expected"]
    assert first.usage.prompt_tokens > 16  # the image's 16 feature tokens are in the prompt
    hits = get(base + "/health")["prefix_cache_hit_tokens"]
    # the same image as a local file: same pixels, so the cached blocks are reused and the reply is the same
    again = ask(base, RED)
    assert again.choices[0].message.content == served["expected"]
    hits_after = get(base + "/health")["prefix_cache_hit_tokens"]
    assert hits_after > hits
    # another image with the same token ids: nothing may come from the cache
    ask(base, "file://" + OTHER)
    assert get(base + "/health")["prefix_cache_hit_tokens"] == hits_after


def test_remote_and_bad_images_are_refused(served):
    base = served["base"]
    with pytest.raises(openai.BadRequestError, match="no network access"):
        ask(base, "https://example.com/cat.png")
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\].content\[0\].image_url: no such file"):
        ask(base, "/nonexistent/cat.png")
    with pytest.raises(openai.BadRequestError, match="not a readable image"):
        ask(base, "data:image/png;base64," + base64.b64encode(b"not a png").decode())
    with pytest.raises(openai.BadRequestError, match=r"2 <image> placeholder\(s\) but 1 image"):
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        client.chat.completions.create(model="tiny-llava", max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": RED}}, {"type": "text", "text": "<image>"}]}])
