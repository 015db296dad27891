"""Validates chatgate's /openapi.json as OpenAPI 3.1, then validates real
answers against it: argv[1] is the base URL, argv[2] a client key.

Each answer is checked against the schema the spec gives for its path,
method, status and content type (tests/it/openapi.rs runs this)."""

import json
import sys
import urllib.error
import urllib.request

import jsonschema
from openapi_spec_validator import validate

base, key = sys.argv[1], sys.argv[2]


def call(method, path, body=None, auth=True):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if auth:
        req.add_header("authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


status, _, raw = call("GET", "/openapi.json", auth=False)
assert status == 200, status
spec = json.loads(raw)
validate(spec)  # raises unless it is a valid OpenAPI 3.1 document
assert spec["openapi"].startswith("3.1"), spec["openapi"]


def schema_for(template, method, status, content_type):
    responses = spec["paths"][template][method]["responses"]
    response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    assert response, f"{method} {template}: {status} is not documented"
    media = content_type.split(";")[0].strip()
    content = response.get("content", {})
    assert media in content, f"{method} {template} {status}: {media} not in {list(content)}"
    # Resolve `$ref`s against the whole document.
    return {**content[media].get("schema", {}), "components": spec["components"]}


checked = 0


def check(method, template, path, body=None, auth=True, expect=None):
    global checked
    status, content_type, raw = call(method.upper(), path, body, auth)
    if expect is not None:
        assert status == expect, f"{method} {path}: {status} {raw[:200]!r}"
    schema = schema_for(template, method, status, content_type)
    if content_type.startswith("application/json"):
        jsonschema.validate(json.loads(raw), schema, cls=jsonschema.Draft202012Validator)
    checked += 1


check("post", "/api/v1/chat", "/api/v1/chat", {"messages": [{"role": "user", "content": "hi"}]}, expect=200)
check("post", "/api/v1/chat", "/api/v1/chat", {"messages": "nope"}, expect=400)
check("post", "/api/v1/chat", "/api/v1/chat", {"messages": []}, auth=False, expect=401)
check("post", "/api/v1/chat/completions", "/api/v1/chat/completions",
      {"model": "default", "messages": [{"role": "user", "content": "hi"}]}, expect=200)
check("post", "/api/v1/chat/completions", "/api/v1/chat/completions", {"messages": 3}, expect=400)
check("post", "/api/v1/messages", "/api/v1/messages",
      {"model": "default", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}, expect=200)
check("get", "/api/v1/models", "/api/v1/models", expect=200)
check("get", "/api/v1/models/{id}", "/api/v1/models/default", expect=200)
check("get", "/api/v1/models/{id}", "/api/v1/models/no-such-model", expect=404)
check("get", "/health", "/health", expect=200)
check("get", "/health/ready", "/health/ready", expect=200)
check("get", "/metrics", "/metrics", auth=False, expect=200)
print(f"ok: spec valid, {checked} answers conform")
