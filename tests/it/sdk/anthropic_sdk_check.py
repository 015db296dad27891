"""Drives chatgate's Anthropic Messages route with the official `anthropic`
SDK: create, stream (text_stream and get_final_message), a tool_use answer and
a tool_result turn, a streamed tool call, an image, and errors mapped to the
SDK's exception types. Prints what it saw as JSON (the Rust test checks the
upstream's side); exits non-zero with a message on any mismatch.

Usage: anthropic_sdk_check.py <base_url ending in /api> <key> <model>
"""

import json
import sys

import anthropic

base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
seen = {}


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


WEATHER = {
    "name": "weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}

# 1. A whole answer.
m = client.messages.create(
    model=model,
    max_tokens=100,
    system="Be brief.",
    messages=[{"role": "user", "content": "Hello SDK"}],
    stop_sequences=["END"],
    # This SDK version has no sampling kwargs; older ones send the same fields.
    extra_body={"temperature": 0.5, "top_k": 5},
    metadata={"user_id": "u-1"},
)
check(m.id.startswith("msg_"), f"id {m.id}")
check(m.type == "message" and m.role == "assistant", f"type/role {m.type} {m.role}")
check(m.model == model, f"model {m.model}")
check(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason}")
check(m._request_id, "request-id header read by the SDK")
seen["create"] = {
    "text": m.content[0].text,
    "usage": {"input": m.usage.input_tokens, "output": m.usage.output_tokens},
}

# 2. A stream: text pieces, then the accumulated message.
with client.messages.stream(
    model=model, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
) as stream:
    pieces = list(stream.text_stream)
    final = stream.get_final_message()
check(len(pieces) >= 2, f"pieces {pieces}")
check(final.stop_reason == "end_turn", f"stream stop_reason {final.stop_reason}")
seen["stream"] = {
    "pieces": pieces,
    "final": "".join(b.text for b in final.content if b.type == "text"),
    "output_tokens": final.usage.output_tokens,
}

# 3. A tool_use answer, then the tool_result turn.
m = client.messages.create(
    model=model,
    max_tokens=100,
    tools=[WEATHER],
    tool_choice={"type": "auto"},
    messages=[{"role": "user", "content": "Weather in Lisbon?"}],
)
check(m.stop_reason == "tool_use", f"tool stop_reason {m.stop_reason}")
uses = [b for b in m.content if b.type == "tool_use"]
check(len(uses) == 1, f"tool_use blocks {m.content}")
use = uses[0]
check(use.input == {"city": "Lisbon"}, f"input {use.input}")
seen["tool_use"] = {"id": use.id, "name": use.name, "input": use.input}
m = client.messages.create(
    model=model,
    max_tokens=100,
    tools=[WEATHER],
    messages=[
        {"role": "user", "content": "Weather in Lisbon?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ],
)
seen["tool_result_answer"] = m.content[0].text

# 4. A streamed tool call: input_json_delta pieces put together by the SDK.
with client.messages.stream(
    model=model,
    max_tokens=100,
    tools=[WEATHER],
    messages=[{"role": "user", "content": "Weather in Lisbon?"}],
) as stream:
    kinds = [e.type for e in stream]
    final = stream.get_final_message()
check(kinds[0] == "message_start", f"first event {kinds[:1]}")
check(kinds[-1] == "message_stop", f"last event {kinds[-1:]}")
check(final.stop_reason == "tool_use", f"streamed tool stop_reason {final.stop_reason}")
seen["tool_stream"] = [
    {"type": b.type, "name": getattr(b, "name", None), "input": getattr(b, "input", None)}
    for b in final.content
]

# 5. An image (base64 source).
m = client.messages.create(
    model=model,
    max_tokens=100,
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        }
    ],
)
seen["image"] = m.content[0].text

# 6. Errors as the SDK's exception types.
errors = {}
try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model answered")
except anthropic.NotFoundError as e:
    errors["model"] = {"status": e.status_code, "type": e.type, "request_id": bool(e.request_id)}
try:
    anthropic.Anthropic(base_url=base_url, api_key="wrong-key", max_retries=0).messages.create(
        model=model, max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    check(False, "a wrong key answered")
except anthropic.AuthenticationError as e:
    errors["auth"] = {"status": e.status_code, "type": e.type}
try:
    client.messages.create(model=model, max_tokens=10, messages=[{"role": "system", "content": "x"}])
    check(False, "a system role in messages answered")
except anthropic.BadRequestError as e:
    errors["bad_role"] = {"status": e.status_code, "type": e.type}
seen["errors"] = errors

print(json.dumps(seen))
