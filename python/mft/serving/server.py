"""The OpenAI-compatible HTTP server: a Starlette app over an LLMEngine stepping on its own thread.

Routes: GET /health, GET /metrics (Prometheus), GET /v1/models, GET /v1/models/{model}, GET /tokenizer_info,
POST /tokenize and /detokenize (vLLM's shapes: lm-evaluation-harness's remote tokenizer), GET /version,
GET|POST /ping, POST /v1/completions, POST /v1/chat/completions (both with `stream` as server-sent events:
`data: {json}\n\n` chunks, `data: [DONE]\n\n` last; with stream_options.include_usage a last chunk with
empty choices and the usage, "usage": null on the others, as OpenAI does). Engine updates cross from the
engine thread to the event loop through `loop.call_soon_threadsafe` into
one asyncio.Queue per request. Bad requests get OpenAI's error JSON with a
4xx status; a streaming client that disconnects aborts its request (its
blocks go back to the pool at the next step).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mft import __version__
from mft.errors import MftError
from mft.serving import protocol as proto
from mft.serving.access import middleware
from mft.serving.engine_thread import EngineThread
from mft.serving.metrics import ServingMetrics
from mft.serving.sampling import ParamError

log = logging.getLogger("mft.serve")


def error_response(status: int, message: str, param=None, type_="invalid_request_error", code=None) -> JSONResponse:
    return JSONResponse(proto.error_body(message, type_, param, code), status_code=status)


class Server:
    def __init__(self, engine, tokenizer, model_name: str, *, aliases=(), api_keys=None, cors=None):
        """model_name: the name responses carry (`--served-model-name`'s first); aliases: other names requests may use
        for the base model; api_keys: Bearer keys required on /v1 (None: open); cors: {origins, methods, headers,
        credentials} for Starlette's CORS middleware (None: no CORS headers)."""
        self.engine = engine
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.base_names = [model_name, *[a for a in aliases if a != model_name]]
        self.api_keys = list(api_keys or [])
        self.cors = cors
        self.processor = None  # a vision-language model's processor: chat messages may carry image_url parts (serving/images.py)
        lora = getattr(engine, "lora", None)
        self.adapters = dict(lora.index) if lora is not None else {}  # served name -> adapter slot
        self.created = int(time.time())
        # what OpenAI's system_fingerprint stands for: the backend and configuration answering (changes with either)
        config = json.dumps([__version__, model_name, sorted(self.adapters), engine.max_model_len, engine.vocab_size])
        self.fingerprint = "fp_" + hashlib.sha256(config.encode()).hexdigest()[:12]
        self.metrics = ServingMetrics(engine)
        self.runner = EngineThread(engine, self.metrics)
        self._token_text_cache: dict[int, str] = {}

    # ---- helpers -----------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        text = self._token_text_cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False)
            self._token_text_cache[token_id] = text
        return text

    def encoder(self, body: dict, default_special: bool):
        special = body.get("add_special_tokens")
        special = default_special if special is None else special
        if not isinstance(special, bool):
            raise ParamError("add_special_tokens", "add_special_tokens: must be a boolean")
        return lambda text: list(self.tokenizer.encode(text, add_special_tokens=special))

    async def body_of(self, request: HttpRequest) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise ParamError("body", f"body: malformed JSON ({e})") from None
        body = proto.require_object(body)
        model = body.get("model")
        if model is not None and model not in self.base_names and model not in self.adapters:
            raise LookupError(model)
        return body

    def served(self, body: dict) -> tuple[str, int]:
        """(the model name answered with, adapter slot) of a checked body."""
        name = body.get("model")
        if name in self.adapters:
            return name, self.adapters[name]
        return self.model_name, 0

    def _card(self, name: str) -> dict:
        parent = self.model_name if name in self.adapters else None
        return {"id": name, "object": "model", "created": self.created, "owned_by": "mft", "root": name, "parent": parent,
                "max_model_len": self.engine.max_model_len}

    # ---- routes ---------------------------------------------------------------
    async def health(self, request: HttpRequest):
        if self.runner.error is not None:
            return JSONResponse({"status": "error", "error": repr(self.runner.error)}, status_code=500)
        return JSONResponse({"status": "ok", **self.engine.stats()})

    async def ping(self, request: HttpRequest):
        """vLLM's /ping (SageMaker's probe): 200 and no body while the engine is fine."""
        return Response(status_code=500 if self.runner.error is not None else 200)

    async def version(self, request: HttpRequest):
        return JSONResponse({"version": __version__})

    async def prometheus(self, request: HttpRequest):
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(self, request: HttpRequest):
        return JSONResponse({"object": "list", "data": [self._card(n) for n in [*self.base_names, *self.adapters]]})

    async def model(self, request: HttpRequest):
        name = request.path_params["model"]
        if name not in self.base_names and name not in self.adapters:
            return self._model_not_found(name)
        return JSONResponse(self._card(name))

    def _model_not_found(self, model) -> JSONResponse:
        names = ", ".join(repr(n) for n in [*self.base_names, *self.adapters])
        return error_response(404, f"model: the model {model!r} does not exist (this server has {names})", "model", code="model_not_found")

    async def tokenizer_info(self, request: HttpRequest):
        """vLLM's /tokenizer_info (what lm-evaluation-harness's remote tokenizer reads)."""
        tok = self.tokenizer

        def text(token_id):
            return None if token_id is None else tok.id_to_token(token_id)

        template = getattr(tok, "chat_template", None)
        return JSONResponse({"tokenizer_class": "mft.tokenizer.Tokenizer", "eos_token": text(tok.eos_id), "bos_token": text(tok.bos_id),
                             "pad_token": text(tok.pad_id), "chat_template": template if isinstance(template, str) else None,
                             "model_max_length": self.engine.max_model_len, "vocab_size": self.engine.vocab_size})

    async def tokenize(self, request: HttpRequest):
        return await self._guard(self._tokenize, request)

    async def _tokenize(self, request: HttpRequest):
        """vLLM's /tokenize: {"prompt"} (add_special_tokens default true) or {"messages"} through the chat template
        (add_generation_prompt default true, add_special_tokens default false); return_token_strs adds token_strs."""
        body = await self.body_of(request)
        if "messages" in body:
            text = self._render_chat(body, proto.chat_messages(body))
            tokens = self.encoder(body, False)(text)
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise ParamError("prompt", "prompt: must be a string (or send messages)")
            tokens = self.encoder(body, True)(prompt)
        strs = body.get("return_token_strs", False)
        if not isinstance(strs, bool) and strs is not None:
            raise ParamError("return_token_strs", "return_token_strs: must be a boolean")
        return JSONResponse({"tokens": tokens, "count": len(tokens), "max_model_len": self.engine.max_model_len,
                             "token_strs": [self.tokenizer.id_to_token(t) for t in tokens] if strs else None})

    async def detokenize(self, request: HttpRequest):
        return await self._guard(self._detokenize, request)

    async def _detokenize(self, request: HttpRequest):
        body = await self.body_of(request)
        tokens = body.get("tokens")
        if not (isinstance(tokens, list) and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.engine.vocab_size
                                                 for t in tokens)):
            raise ParamError("tokens", f"tokens: must be a list of token ids in [0, {self.engine.vocab_size})")
        return JSONResponse({"prompt": self.tokenizer.decode(tokens, skip_special_tokens=False)})

    async def completions(self, request: HttpRequest):
        return await self._guard(self._completions, request)

    async def chat(self, request: HttpRequest):
        return await self._guard(self._chat, request)

    async def _guard(self, handler, request):
        try:
            return await handler(request)
        except ParamError as e:
            return error_response(400, str(e), e.param, code=getattr(e, "code", None))
        except LookupError as e:
            return self._model_not_found(e.args[0])
        except MftError as e:
            return error_response(400, str(e))

    def _submit_all(self, prompts, options, adapter: int = 0, images=None):
        loop = asyncio.get_running_loop()
        for p in prompts:  # validate every prompt before starting any
            try:
                self.engine.check(p, options)
            except ParamError as e:
                if "maximum context length" in str(e):  # OpenAI's code for it (clients look for it to trim history)
                    raise ParamError(e.param, str(e), "context_length_exceeded") from None
                raise
        return [self.runner.submit(p, options, loop, adapter, images) for p in prompts]

    async def _collect(self, submitted, n: int):
        """Waits for every sequence; -> per (prompt, seq) lists of updates."""
        results = []
        for request, queue in submitted:
            per_seq = [[] for _ in range(n)]
            done = 0
            while done < n:
                update = await queue.get()
                if isinstance(update, BaseException):
                    raise RuntimeError(f"engine failed: {update!r}")
                per_seq[update.index].append(update)
                done += update.finish_reason is not None
            results.append((request, per_seq))
        return results

    def _abort_unfinished(self, submitted):
        for request, _ in submitted:
            if not request.finished:
                self.engine.abort(request.request_id)
        self.runner.wake.set()

    @staticmethod
    def _usage(submitted) -> dict:
        prompt = sum(len(r.prompt_ids) for r, _ in submitted)
        completion = sum(len(s.output) + len(s.extra) for r, _ in submitted for s in r.seqs)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _head(self, kind: str, name: str) -> dict:
        prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": name,
                "system_fingerprint": self.fingerprint}

    # ---- /v1/completions ------------------------------------------------------
    async def _completions(self, request: HttpRequest):
        body = await self.body_of(request)
        flags = proto.stream_flags(body)
        options, echo, best_of = proto.completion_options(body, self.engine.vocab_size)
        prompts = proto.completion_prompts(body, self.encoder(body, True))
        name, adapter = self.served(body)
        submitted = self._submit_all(prompts, options, adapter)
        head = self._head("text_completion", name)
        if flags.stream:
            return self._sse(self._stream_completions(submitted, head, options, echo, flags, body), submitted)
        try:
            results = await self._collect(submitted, options.n)
        except asyncio.CancelledError:
            self._abort_unfinished(submitted)
            raise
        asked_logprobs = body.get("logprobs")
        n = options.n if best_of is None else (body.get("n") or 1)
        choices = []
        for p, (req, per_seq) in enumerate(results):
            prompt_text = self._echo_text(body, p, req) if echo else ""
            if best_of is not None:
                per_seq = _best(per_seq, n)
            for i, updates in enumerate(per_seq):
                text = "".join(u.text for u in updates)
                logprobs = None
                if asked_logprobs is not None:
                    entries = [(e.token, e) for u in updates for e in u.logprobs]
                    if echo:
                        prompt_entries = list(zip(req.prompt_ids, req.prompt_logprobs or [None] * len(req.prompt_ids)))
                        entries = prompt_entries + entries
                    logprobs = proto.completion_logprobs(entries, self.token_text)
                choices.append({"index": p * n + i, "text": prompt_text + text, "logprobs": logprobs,
                                "finish_reason": updates[-1].finish_reason})
        return JSONResponse({**head, "choices": choices, "usage": self._usage(submitted)})

    def _usage_fields(self, flags, prompt_tokens: int, completion_tokens: int) -> dict:
        """A content chunk's usage: absent without include_usage, null with it, the running counts of this choice
        with continuous_usage_stats (vLLM's extension)."""
        if flags.continuous_usage:
            return {"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}}
        return {"usage": None} if flags.include_usage else {}

    @staticmethod
    def _count(req, update, counts, key) -> int:
        """Completion tokens of one choice so far (the final count includes a stop token not shown)."""
        if update.finish_reason is not None:
            seq = req.seqs[update.index]
            counts[key] = len(seq.output) + len(seq.extra)
        else:
            counts[key] = counts.get(key, 0) + len(update.tokens)
        return counts[key]

    def _echo_text(self, body: dict, p: int, req) -> str:
        """The echoed prompt: the text as sent for string prompts (as vLLM and OpenAI echo it), decoded ids otherwise."""
        prompt = body["prompt"]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt[p], str):
            return prompt[p]
        return self.tokenizer.decode(req.prompt_ids)

    async def _stream_completions(self, submitted, head, options, echo, flags, body):
        n = options.n
        queue = _merged(submitted, n)
        offsets: dict[int, int] = {}  # choice -> characters of its token texts so far (logprobs text_offset)
        counts: dict[int, int] = {}
        held: dict[int, list] = {p: [] for p in range(len(submitted))} if echo else {}  # updates waiting for the echo

        def echo_chunks(p):
            req = submitted[p][0]
            text = self._echo_text(body, p, req)
            for i in range(n):
                logprobs = None
                if options.logprobs is not None:
                    entries = list(zip(req.prompt_ids, req.prompt_logprobs or [None] * len(req.prompt_ids)))
                    logprobs = proto.completion_logprobs(entries, self.token_text)
                    offsets[p * n + i] = sum(len(t) for t in logprobs["tokens"])
                yield {**head, "choices": [{"index": p * n + i, "text": text, "logprobs": logprobs, "finish_reason": None}],
                       **self._usage_fields(flags, len(req.prompt_ids), 0)}

        def chunk(p, update):
            req = submitted[p][0]
            ci = p * n + update.index
            completion = self._count(req, update, counts, ci)
            if not update.text and update.finish_reason is None and not update.logprobs:
                return None
            logprobs = None
            if options.logprobs is not None:
                logprobs = proto.completion_logprobs([(e.token, e) for e in update.logprobs], self.token_text, offsets.get(ci, 0))
                offsets[ci] = offsets.get(ci, 0) + sum(len(t) for t in logprobs["tokens"])
            return {**head, "choices": [{"index": ci, "text": update.text, "logprobs": logprobs, "finish_reason": update.finish_reason}],
                    **self._usage_fields(flags, len(req.prompt_ids), completion)}

        remaining = len(submitted) * n
        while remaining:
            p, update = await queue.get()
            if isinstance(update, BaseException):
                raise RuntimeError(f"engine failed: {update!r}")
            remaining -= update.finish_reason is not None
            if p in held:
                # the echoed prompt goes first; its logprobs exist once sequence 0 has been prefilled (its first update)
                held[p].append(update)
                if options.prompt_logprobs is not None and not any(u.index == 0 for u in held[p]):
                    continue
                for c in echo_chunks(p):
                    yield c
                pending = held.pop(p)
            else:
                pending = [update]
            for u in pending:
                c = chunk(p, u)
                if c is not None:
                    yield c
        if flags.include_usage:
            yield {**head, "choices": [], "usage": self._usage(submitted)}

    # ---- /v1/chat/completions ---------------------------------------------------
    def _render_chat(self, body: dict, messages: list) -> str:
        from mft.tokenizer.chat_template import apply_chat_template

        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ParamError("messages", "messages: this model has no chat template (tokenizer_config.json 'chat_template' "
                                         "or chat_template.jinja); use /v1/completions with a plain prompt")
        add_generation_prompt = body.get("add_generation_prompt", True)
        if not isinstance(add_generation_prompt, bool):
            raise ParamError("add_generation_prompt", "add_generation_prompt: must be a boolean")
        tools = body.get("tools") or None  # only with tool_choice "none" (refuse_unsupported): shown to the model, never parsed
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
            raise ParamError("tools", "tools: must be a list of tool objects")
        return apply_chat_template(self.tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools,
                                   **proto.chat_template_kwargs(body))

    async def _chat(self, request: HttpRequest):
        from mft.serving import images as vision

        body = await self.body_of(request)
        flags = proto.stream_flags(body)
        proto.refuse_unsupported(body, "chat")  # before the template: tools would otherwise be dropped silently
        pictures = None
        if vision.has_image_parts(body):
            if self.processor is None:
                raise ParamError("messages", f"messages: image_url parts need a vision-language model; {self.model_name} reads text only")
            body, pictures = vision.split_image_parts(body, vision.placeholder_of(self.processor))
        messages = proto.chat_messages(body)
        text = self._render_chat(body, messages)
        image_inputs = None
        if pictures:
            prompt_ids, image_inputs = vision.encode_with_images(self.processor, self.tokenizer, text, pictures)
        else:
            prompt_ids = self.encoder(body, False)(text)
        options = proto.chat_options(body, len(prompt_ids), self.engine.max_model_len, self.engine.vocab_size)
        name, adapter = self.served(body)
        submitted = self._submit_all([prompt_ids], options, adapter, image_inputs)
        head = self._head("chat.completion", name)
        if flags.stream:
            return self._sse(self._stream_chat(submitted, {**head, "object": "chat.completion.chunk"}, options, flags), submitted)
        try:
            results = await self._collect(submitted, options.n)
        except asyncio.CancelledError:
            self._abort_unfinished(submitted)
            raise
        choices = []
        for i, updates in enumerate(results[0][1]):
            logprobs = None
            if options.logprobs is not None:
                logprobs = proto.chat_logprobs([e for u in updates for e in u.logprobs], self.token_text)
            message = {"role": "assistant", "content": "".join(u.text for u in updates), "refusal": None}
            choices.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": updates[-1].finish_reason})
        return JSONResponse({**head, "choices": choices, "usage": self._usage(submitted)})

    async def _stream_chat(self, submitted, head, options, flags):
        req = submitted[0][0]
        prompt_tokens = len(req.prompt_ids)
        queue = _merged(submitted, options.n)
        for i in range(options.n):
            yield {**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
                   **self._usage_fields(flags, prompt_tokens, 0)}
        counts: dict[int, int] = {}
        remaining = options.n
        while remaining:
            _, update = await queue.get()
            if isinstance(update, BaseException):
                raise RuntimeError(f"engine failed: {update!r}")
            remaining -= update.finish_reason is not None
            completion = self._count(req, update, counts, update.index)
            if not update.text and update.finish_reason is None and not update.logprobs:
                continue
            logprobs = None
            if options.logprobs is not None:
                logprobs = proto.chat_logprobs(update.logprobs, self.token_text)
            delta = {"content": update.text} if update.text else {}
            yield {**head, "choices": [{"index": update.index, "delta": delta, "logprobs": logprobs,
                                         "finish_reason": update.finish_reason}], **self._usage_fields(flags, prompt_tokens, completion)}
        if flags.include_usage:
            yield {**head, "choices": [], "usage": self._usage(submitted)}

    def _sse(self, chunks, submitted) -> StreamingResponse:
        async def events():
            try:
                async for chunk in chunks:
                    yield f"data: {json.dumps(chunk)}\n\n"
            except RuntimeError as e:  # the engine failed mid-stream: an error event, then the terminator as usual (vLLM's way)
                yield f"data: {json.dumps(proto.error_body(str(e), 'server_error'))}\n\n"
            finally:  # also runs when the client goes away mid-stream
                self._abort_unfinished(submitted)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def app(self) -> Starlette:
        async def not_found(request, exc):
            return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                  code="not_found" if exc.status_code == 404 else None)

        async def crashed(request, exc):
            log.exception("request failed")
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error")

        from starlette.exceptions import HTTPException

        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            self.runner.stop()

        return Starlette(routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/ping", self.ping, methods=["GET", "POST"]),
            Route("/version", self.version, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model, methods=["GET"]),
            Route("/tokenizer_info", self.tokenizer_info, methods=["GET"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ], middleware=middleware(self.api_keys, self.cors), exception_handlers={HTTPException: not_found, Exception: crashed},
            lifespan=lifespan)


def _best(per_seq: list, n: int) -> list:
    """best_of: the n sequences with the highest mean logprob per shown token (OpenAI's rule; a stop token that ended
    a sequence is not shown and not counted), best first; ties keep the earlier sequence."""
    def score(updates):
        lps = [e.logprob for u in updates for e in u.logprobs]
        return sum(lps) / len(lps) if lps else float("-inf")

    order = sorted(range(len(per_seq)), key=lambda i: -score(per_seq[i]))
    return [per_seq[i] for i in order[:n]]


def _merged(submitted, n: int) -> asyncio.Queue:
    """One queue of (prompt index, update) over every request's queue (each ends after n finished sequences)."""
    merged: asyncio.Queue = asyncio.Queue()

    async def pump(p, queue):
        done = 0
        while done < n:
            update = await queue.get()
            await merged.put((p, update))
            if isinstance(update, BaseException):
                return
            done += update.finish_reason is not None

    for p, (_, queue) in enumerate(submitted):
        asyncio.get_running_loop().create_task(pump(p, queue))
    return merged
