"""Serving: a continuous-batching engine over a paged KV cache, and the OpenAI-compatible HTTP server.

`engine.LLMEngine` (no HTTP) schedules requests step by step; `server` wraps
it in a Starlette app run by uvicorn (`mft serve`). Models stay unaware of
both: the engine drives `forward_step` through `paged_runner.PagedRunner`.
"""
