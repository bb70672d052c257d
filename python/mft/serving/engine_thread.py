"""EngineThread: the LLMEngine stepping on its own thread under `mft serve`, requests handed over from the
event loop (each request's updates come back through `loop.call_soon_threadsafe` into its asyncio.Queue)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

log = logging.getLogger("mft.serve")


class EngineThread:
    """Runs engine.step() whenever there is work; wakes when a request arrives."""

    def __init__(self, engine, metrics=None):
        self.engine = engine
        self.metrics = metrics
        self.wake = threading.Event()
        self.stopping = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="mft-engine", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            if not self.engine.has_work():
                self.wake.wait(0.05)
                self.wake.clear()
                continue
            try:
                self.engine.step()
            except BaseException as e:  # a bug: keep serving errors instead of hanging clients
                log.exception("engine step failed")
                self.error = e
                self._fail_all(e)

    def _fail_all(self, error):
        engine = self.engine
        for request in list(engine.requests.values()):
            engine.abort(request.request_id)
            if request.on_update is not None:
                request.on_update(request, error)

    def submit(self, prompt_ids, options, loop, adapter: int = 0, images=None) -> tuple:
        queue: asyncio.Queue = asyncio.Queue()

        def on_update(request, update):
            loop.call_soon_threadsafe(queue.put_nowait, update)

        if self.metrics is not None:
            on_update = self.metrics.track(on_update)
        request = self.engine.add_request(prompt_ids, options, request_id=uuid.uuid4().hex, on_update=on_update, adapter=adapter,
                                          images=images)
        if self.metrics is not None:
            self.metrics.prompt_tokens.inc(len(request.prompt_ids) * options.n)
        self.wake.set()
        return request, queue

    def stop(self):
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=10)
