"""Load generator for any OpenAI-compatible endpoint (`mft eval --serving URL`).

N concurrent clients (asyncio tasks over one `openai.AsyncOpenAI` client)
take requests from a shared list in order until it is empty. Streaming
requests (the default) time each chunk as it arrives: a completions chunk
counts as many tokens as its `logprobs.tokens` (we ask for `logprobs: 0`,
as vLLM's and mft's servers return one entry per token), else one per
chunk with text; the final count comes from the server's usage chunk
(`stream_options.include_usage`) when it sends one. `ignore_eos` (a vLLM /
mft extension, sent in the body) keeps output lengths at max_tokens so runs
compare. With a request rate, requests instead arrive as a seeded Poisson
process (open loop), at most `concurrency` in flight. Statistics: load_stats.py.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from mft.errors import MftError
from mft.eval.load_requests import LoadRequest
from mft.eval.load_stats import RequestResult, summarize


def api_base(url: str) -> str:
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise MftError(f"--serving {url!r}: expected an http:// or https:// URL")
    return url if url.endswith("/v1") else url + "/v1"


def _client(base: str, api_key: str, timeout: float):
    try:
        import openai
    except ImportError:
        raise MftError("mft eval --serving needs the openai client (pip install openai)") from None
    return openai.AsyncOpenAI(base_url=base, api_key=api_key or "unused", timeout=timeout, max_retries=0)


class LoadRunner:
    def __init__(self, url: str, model: str | None = None, endpoint: str = "completions", stream: bool = True,
                 ignore_eos: bool = True, api_key: str = "", timeout: float = 600.0, token_logprobs: bool = True):
        if endpoint not in ("completions", "chat"):
            raise MftError(f"--endpoint {endpoint!r}: expected completions or chat")
        self.base = api_base(url)
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.ignore_eos = ignore_eos
        self.api_key = api_key
        self.timeout = timeout
        self.token_logprobs = token_logprobs

    async def _model_name(self, client) -> str:
        if self.model:
            return self.model
        try:
            models = (await client.models.list()).data
        except Exception as e:  # noqa: BLE001 - any failure to reach the server is the user's to see
            raise MftError(f"--serving {self.base}: GET /models failed ({type(e).__name__}: {e})") from None
        if not models:
            raise MftError(f"--serving {self.base}: /models lists no model; pass --model NAME")
        return models[0].id

    def _body(self, model: str, req: LoadRequest) -> tuple:
        extra = {"ignore_eos": True} if self.ignore_eos else None
        kw = dict(model=model, max_tokens=req.max_tokens, temperature=0, extra_body=extra)
        if self.stream:
            kw.update(stream=True, stream_options={"include_usage": True})
        if self.endpoint == "chat" or req.messages is not None:
            messages = req.messages or [{"role": "user", "content": req.prompt if isinstance(req.prompt, str) else str(req.prompt)}]
            if self.stream and self.token_logprobs:
                kw.update(logprobs=True, top_logprobs=0)
            return "chat", dict(messages=messages, **kw)
        if self.stream and self.token_logprobs:
            kw["logprobs"] = 0
        return "completions", dict(prompt=req.prompt, **kw)

    async def _one(self, client, model: str, req: LoadRequest) -> RequestResult:
        kind, kw = self._body(model, req)
        api = client.chat.completions if kind == "chat" else client.completions
        start = time.perf_counter()
        try:
            if not self.stream:
                r = await api.create(**kw)
                end = time.perf_counter()
                u = r.usage
                return RequestResult(True, prompt_tokens=u.prompt_tokens if u else 0, output_tokens=u.completion_tokens if u else 0,
                                     ttft=end - start, e2e=end - start, usage_reported=u is not None)
            result = RequestResult(True)
            counted, last, usage = 0, None, None
            stream = await api.create(**kw)
            async for chunk in stream:
                now = time.perf_counter()
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                n = sum(_chunk_tokens(kind, c) for c in (chunk.choices or []))
                if n:
                    if last is None:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
                    counted += n
            result.e2e = time.perf_counter() - start
            if usage is not None:
                result.prompt_tokens, result.output_tokens, result.usage_reported = usage.prompt_tokens, usage.completion_tokens, True
            else:
                result.output_tokens = counted
            return result
        except Exception as e:  # noqa: BLE001 - counted as a failed request, the run goes on
            message = getattr(e, "message", None) or str(e)
            return RequestResult(False, error=f"{type(e).__name__}: {message}"[:300])

    async def _run(self, requests: list[LoadRequest], concurrency: int, warmup: int, request_rate: float | None, seed: int) -> tuple:
        client = _client(self.base, self.api_key, self.timeout)
        try:
            model = await self._model_name(client)
            for req in requests[:warmup]:
                await self._one(client, model, req)
            results: list = [None] * len(requests)
            start = time.perf_counter()
            if request_rate is None:  # closed loop: `concurrency` clients, each sends its next request when one ends
                cursor = iter(range(len(requests)))

                async def worker():
                    for i in cursor:
                        results[i] = await self._one(client, model, requests[i])

                await asyncio.gather(*(worker() for _ in range(concurrency)))
            else:  # open loop: Poisson arrivals at `request_rate`/s, at most `concurrency` in flight
                gaps = np.random.default_rng(seed).exponential(1.0 / request_rate, len(requests))
                arrivals = np.cumsum(gaps) - gaps[0]
                slots = asyncio.Semaphore(concurrency)

                async def send(i):
                    async with slots:
                        results[i] = await self._one(client, model, requests[i])

                tasks = []
                for i, at in enumerate(arrivals):
                    delay = start + at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(send(i)))
                await asyncio.gather(*tasks)
            return model, results, time.perf_counter() - start
        finally:
            await client.close()

    def run(self, requests: list[LoadRequest], concurrency: int, warmup: int = 0, request_rate: float | None = None,
            seed: int = 0) -> tuple[str, list, dict]:
        """-> (model name, per-request results, summary). request_rate None: closed loop of `concurrency` clients;
        else requests arrive as a Poisson process at that rate (seeded), `concurrency` at most in flight."""
        if concurrency < 1:
            raise MftError(f"--concurrency {concurrency}: must be >= 1")
        if request_rate is not None and not request_rate > 0:
            raise MftError(f"--request-rate {request_rate}: must be > 0")
        model, results, wall = asyncio.run(self._run(requests, concurrency, warmup, request_rate, seed))
        summary = summarize(results, wall, concurrency)
        summary["request_rate"] = request_rate
        return model, results, summary


def _chunk_tokens(kind: str, choice) -> int:
    lp = getattr(choice, "logprobs", None)
    if kind == "chat":
        if lp is not None and getattr(lp, "content", None):
            return len(lp.content)
        return 1 if getattr(choice.delta, "content", None) else 0
    if lp is not None and getattr(lp, "tokens", None):
        return len(lp.tokens)
    return 1 if choice.text else 0
