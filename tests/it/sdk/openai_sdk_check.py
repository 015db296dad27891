"""Drives chatgate's OpenAI-compatible routes with the official `openai` SDK.

Model `default` is the mock; model `tools` is a scripted OpenAI-kind upstream
that answers, in order: tool calls (with logprobs and other extra fields),
a stream of two tool calls in pieces, a text for an image, and JSON for a
`response_format` of type `json_schema`.

Strict response validation is on, so every response and stream chunk must
match the SDK's generated types (which follow OpenAI's published schema).
Prints one JSON object with what it saw; exits non-zero on any exception.

    python openai_sdk_check.py BASE_URL API_KEY
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, _strict_response_validation=True, max_retries=0)
out = {"sdk_version": openai.__version__}

models = client.models.list()
out["models"] = [m.id for m in models.data]
out["model_fields"] = sorted(models.data[0].model_dump().keys())

completion = client.chat.completions.create(
    model="default",
    messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello SDK"}],
    max_completion_tokens=50,
    temperature=0.5,
)
choice = completion.choices[0]
out["completion"] = {
    "id": completion.id,
    "object": completion.object,
    "model": completion.model,
    "content": choice.message.content,
    "role": choice.message.role,
    "refusal": choice.message.refusal,
    "finish_reason": choice.finish_reason,
    "usage": completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
}
raw = completion.model_dump()
out["raw_has_nullable_fields"] = "logprobs" in raw["choices"][0] and "refusal" in raw["choices"][0]["message"]

chunks = list(
    client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
)
out["stream"] = {
    "ids": sorted({c.id for c in chunks}),
    "created": sorted({c.created for c in chunks}),
    "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
    "finish_reasons": [c.choices[0].finish_reason for c in chunks if c.choices],
    "usage": [c.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) for c in chunks if c.usage],
    "objects": sorted({c.object for c in chunks}),
}

out["retrieved"] = client.models.retrieve("default").model_dump()

weather = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
called = client.chat.completions.create(
    model="tools",
    messages=[{"role": "user", "content": "weather in Lisbon?"}],
    tools=[weather],
    tool_choice="auto",
    parallel_tool_calls=True,
    logprobs=True,
    top_logprobs=1,
    seed=7,
)
c = called.choices[0]
out["tools"] = {
    "finish_reason": c.finish_reason,
    "content": c.message.content,
    "calls": [{"id": t.id, "type": t.type, "name": t.function.name, "arguments": t.function.arguments} for t in c.message.tool_calls],
    "logprob_tokens": [t.token for t in c.logprobs.content],
    "system_fingerprint": called.system_fingerprint,
    "cached_tokens": called.usage.prompt_tokens_details.cached_tokens,
}

# Replaying the tool turn is accepted; the stream's pieces are put together by index.
replay = [
    {"role": "user", "content": "weather and time?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}} for t in out["tools"]["calls"]
    ]},
] + [{"role": "tool", "tool_call_id": t["id"], "content": "sunny"} for t in out["tools"]["calls"]]
calls = {}
finish = []
for chunk in client.chat.completions.create(model="tools", messages=replay, tools=[weather], stream=True):
    for choice in chunk.choices:
        finish.append(choice.finish_reason)
        for piece in choice.delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            if piece.id:
                assert call["id"] is None, "id only on a call's first piece"
                call["id"], call["name"] = piece.id, piece.function.name
            call["arguments"] += piece.function.arguments or ""
out["tool_stream"] = {"calls": [calls[i] for i in sorted(calls)], "finish_reasons": finish}

seen = client.chat.completions.create(
    model="tools",
    messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]}],
)
out["image"] = seen.choices[0].message.content

structured = client.chat.completions.create(
    model="tools",
    messages=[{"role": "user", "content": "answer"}],
    response_format={"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True,
        "schema": {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"], "additionalProperties": False},
    }},
)
out["json_schema"] = json.loads(structured.choices[0].message.content)

errors = {}
try:
    OpenAI(base_url=base_url, api_key="wrong-key", max_retries=0).chat.completions.create(
        model="default", messages=[{"role": "user", "content": "x"}]
    )
except openai.AuthenticationError as e:
    errors["auth"] = {"status": e.status_code, "code": e.code, "type": e.type}
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    errors["model"] = {"status": e.status_code, "code": e.code}
try:
    client.chat.completions.create(model="default", messages=[{"role": "wizard", "content": "x"}])
except openai.BadRequestError as e:
    errors["bad_role"] = {"status": e.status_code, "code": e.code, "type": e.type, "param": e.param}
try:
    client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}], tools=[weather])
except openai.BadRequestError as e:
    errors["unsupported"] = {"status": e.status_code, "code": e.code, "type": e.type, "param": e.param}
out["errors"] = errors

print(json.dumps(out))
