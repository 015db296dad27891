"""Drives chatgate's OpenAI-compatible routes with the official `openai` SDK.

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

errors = {}
try:
    OpenAI(base_url=base_url, api_key="wrong-key", max_retries=0).chat.completions.create(
        model="default", messages=[{"role": "user", "content": "x"}]
    )
except openai.AuthenticationError as e:
    errors["auth"] = {"status": e.status_code, "code": e.code}
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    errors["model"] = {"status": e.status_code, "code": e.code}
try:
    client.chat.completions.create(model="default", messages=[{"role": "wizard", "content": "x"}])
except openai.BadRequestError as e:
    errors["bad_role"] = {"status": e.status_code, "code": e.code}
out["errors"] = errors

print(json.dumps(out))
