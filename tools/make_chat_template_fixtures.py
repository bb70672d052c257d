"""Regenerates tests/fixtures/chat_templates/cases.json with transformers (run by hand).

    python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install transformers tokenizers jinja2
    /tmp/hfvenv/bin/python tools/make_chat_template_fixtures.py

Each template below is written for this project after the shapes published
model cards document (ChatML as Qwen2.5 uses it, with a default system
prompt and a tools block; Llama-3 headers with a dated system preamble; a
Mistral-style [INST] template that enforces alternating roles with
raise_exception; a template with {% generation %} blocks and namespace).
transformers renders every conversation through a real tokenizer's
`apply_chat_template(tokenize=False)`; the file records the template, the
inputs and transformers' output (or that it raised), and
tests/python/test_chat_template.py checks mft.tokenizer.chat_template against
it without transformers installed. transformers is not a CI requirement.
"""

from __future__ import annotations

import json
import os

import transformers
from transformers import PreTrainedTokenizerFast

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "chat_templates", "cases.json")
TOKENIZER_JSON = os.path.join(REPO, "tests", "fixtures", "tokenizers", "chatml.json")

QWEN25_STYLE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions. Signatures in <tools></tools>:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) or (message.role == 'assistant' and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == 'assistant' %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == 'tool' %}\n"
    "        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}\n"
    "        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

LLAMA3_STYLE = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] | trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = '' %}\n"
    "{%- endif %}\n"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}\n"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}\n"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}\n"
    "{{- system_message }}\n"
    "{{- '<|eot_id|>' }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)

MISTRAL_STYLE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
    "        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n"
    "    {%- endif %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
)

GENERATION_STYLE = (
    "{%- set ns = namespace(turns=0) %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message.role == 'assistant' %}\n"
    "        {%- set ns.turns = ns.turns + 1 %}\n"
    "        {{- '<|im_start|>assistant\\n' }}\n"
    "        {%- if message.reasoning_content %}{{- '<think>' + message.reasoning_content + '</think>' }}{%- endif %}\n"
    "        {%- generation %}{{- message.content + '<|im_end|>\\n' }}{%- endgeneration %}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{{- '<!-- turns: ' ~ ns.turns ~ ' ' ~ (dict(a='é') | tojson) ~ ' -->' }}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city (°C)",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

BASIC = [
    {"role": "user", "content": "Quote Genesis 1:3."},
    {"role": "assistant", "content": "And God said, Let there be light: and there was light."},
]
WITH_SYSTEM = [{"role": "system", "content": "  You answer with Bible verses.  "}] + BASIC + [{"role": "user", "content": "Which book says \"In the beginning\"?"}]
TOOL_CALL = [
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
    {"role": "tool", "content": "{\"temp\": 4}"},
    {"role": "assistant", "content": "It is 4 °C."},
]
NOT_ALTERNATING = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
REASONING = BASIC[:1] + [{"role": "assistant", "content": "Light.", "reasoning": "It is verse three."}]

TEMPLATES = {"qwen2_5_style": QWEN25_STYLE, "llama3_style": LLAMA3_STYLE, "mistral_style": MISTRAL_STYLE, "generation_style": GENERATION_STYLE}
SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}

CASES = [
    ("qwen2_5_style", BASIC, {}),
    ("qwen2_5_style", WITH_SYSTEM, {"add_generation_prompt": True}),
    ("qwen2_5_style", TOOL_CALL, {"tools": TOOLS}),
    ("llama3_style", BASIC, {}),
    ("llama3_style", WITH_SYSTEM, {"add_generation_prompt": True}),
    ("llama3_style", BASIC, {"add_generation_prompt": True, "date_string": "29 Nov 2026"}),
    ("mistral_style", BASIC, {}),
    ("mistral_style", WITH_SYSTEM, {}),
    ("mistral_style", NOT_ALTERNATING, {}),
    ("generation_style", BASIC, {"add_generation_prompt": True}),
    ("generation_style", REASONING, {}),
]


def main() -> None:
    cases = []
    for name, messages, kwargs in CASES:
        tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER_JSON, chat_template=TEMPLATES[name], **SPECIALS)
        case = {"template": name, "messages": messages, "kwargs": kwargs}
        try:
            case["expected"] = tok.apply_chat_template(messages, tokenize=False, **kwargs)
        except Exception as e:  # the template raised (raise_exception)
            case["error"] = str(e)
        cases.append(case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"generator": f"transformers {transformers.__version__}", "special_tokens": SPECIALS,
                   "templates": TEMPLATES, "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
