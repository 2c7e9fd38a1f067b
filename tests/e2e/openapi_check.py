"""Every response the end-to-end suites see, checked against the API's contract,
docs/api/openapi.yaml (JSON Schema 2020-12 through python3-jsonschema).

conftest.py installs `install()` for every suite: it wraps `requests.Session.send`, so
each response from the gateway or an API instance (not storage, not maildev) is checked
as it arrives and what does not match is recorded; the test that saw it then fails at
teardown, naming the request and the mismatch. Checking never changes what a test sees:
no body is read that the test did not ask for (a streamed response is checked as its
lines are read), and nothing is raised inside the test's own code or threads.

What is checked, for a response to METHOD PATH:
- the path and method are an operation of the document; if not, the answer must be a
  4xx/5xx problem (a request to no route is refused, never served);
- the status is declared by the operation — a 2xx or 3xx explicitly, an error by its own
  status or by the operation's `default` (the problems any operation may answer);
- the media type is one the response declares, and a body is there exactly when declared;
- a JSON body validates against the declared schema; a problem body against `Problem`;
- headers the response marks `required` (Location of a redirect, Retry-After of a 429)
  are present;
- each event of a text/event-stream whose name the operation lists in `x-events`
  validates against that event's schema.
"""
import json
import os
import re
import threading
import urllib.parse

import jsonschema
import requests
import yaml

SPEC_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Not part of the public contract: the private metrics and the test drills' debug routes.
UNCHECKED_PATHS = re.compile(r"^/(metrics|debug/)")


class Spec:
    def __init__(self, path=SPEC_PATH):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        self._resolver = jsonschema.RefResolver.from_schema(self.doc)
        self._validators = {}
        self._lock = threading.Lock()
        routes = []
        for template, item in self.doc["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            # Literal paths before templated ones (/v1/images/uploads before /v1/images/{id}).
            routes.append((template.count("{"), template, re.compile(pattern), item))
        self.routes = sorted(routes, key=lambda r: (r[0], r[1]))

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            _, node = self._resolver.resolve(node["$ref"])
        return node

    def operation(self, method, path):
        """(template, operation) for METHOD PATH; (template, None) when the path exists
        but not the method; (None, None) when no path matches."""
        for _, template, pattern, item in self.routes:
            if pattern.match(path):
                op = item.get(method.lower())
                if op is None and method.upper() == "HEAD":
                    op = item.get("get")  # HEAD is served by GET routes
                return template, op
        return None, None

    def validate(self, schema, value):
        """Error messages of `value` against `schema` (a node of the document)."""
        key = id(schema)
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = jsonschema.Draft202012Validator(schema, resolver=self._resolver)
                self._validators[key] = validator
        return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
                for e in validator.iter_errors(value)][:5]

    def problem_schema(self):
        return self.doc["components"]["schemas"]["Problem"]


_spec = None


def spec():
    global _spec
    if _spec is None:
        _spec = Spec()
    return _spec


def _media_type(headers):
    return (headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _declared_media(content, media):
    if media in content:
        return content[media]
    for declared, value in content.items():
        if declared.endswith("/*") and media.startswith(declared[:-1]):
            return value
    return None


def check(method, path, status, headers, body, streamed=False):
    """Mismatches between one response and the document (empty when it matches).
    `headers` is case-insensitive (requests' CaseInsensitiveDict); `body` is bytes, or
    None when the test streams the response (then the body is not checked here)."""
    s = spec()
    errors = []
    template, op = s.operation(method, path)
    media = _media_type(headers)
    if op is None:
        where = "no such path in the document" if template is None else f"{method} not in the document for {template}"
        if status < 400:
            return [f"{status} answered, but {where}"]
        if method.upper() == "HEAD" or body is None or not body:
            return []
        if media != "application/problem+json":
            return [f"{status} {media!r} for a request outside the document; a problem+json was expected"]
        return _check_json(s, s.problem_schema(), body)

    responses = op["responses"]
    declared = responses.get(str(status)) or responses.get(f"{status // 100}XX")
    if declared is None:
        if status < 400:
            return [f"status {status} is not declared for {method} {template}"]
        declared = responses.get("default")
        if declared is None:
            return [f"status {status} is not declared for {method} {template} (and no default)"]
    declared = s.resolve(declared)

    for name, header in (declared.get("headers") or {}).items():
        if s.resolve(header).get("required") and name not in headers:
            errors.append(f"required header {name} missing from {status}")

    content = declared.get("content") or {}
    if method.upper() == "HEAD":
        return errors
    if not content:
        if body:
            errors.append(f"{status} has a body ({media!r}, {len(body)} bytes) but declares none")
        return errors
    entry = _declared_media(content, media)
    if entry is None:
        return errors + [f"{status} answered as {media!r}; declared: {', '.join(content)}"]
    if streamed or body is None:
        return errors
    if media.endswith("json"):
        errors += _check_json(s, entry.get("schema", {}), body)
    return errors


def _check_json(s, schema, body):
    try:
        value = json.loads(body)
    except ValueError as e:
        return [f"body is not JSON ({e}): {body[:120]!r}"]
    return s.validate(schema, value)


def event_schemas(method, path):
    """{event name: schema} of a text/event-stream operation (its `x-events`)."""
    _, op = spec().operation(method, path)
    if op is None:
        return {}
    ok = spec().resolve(op["responses"].get("200", {}))
    entry = (ok.get("content") or {}).get("text/event-stream") or {}
    return entry.get("x-events") or {}


# --- recording, for conftest.py --------------------------------------------------------

FAILURES = []
_failures_lock = threading.Lock()


def _record(what, errors):
    with _failures_lock:
        FAILURES.extend(f"{what}: {e}" for e in errors)


def take_failures():
    with _failures_lock:
        out = list(FAILURES)
        FAILURES.clear()
    return out


def _checked_origins():
    origins = set()
    for name in ("NIMBUS_TEST_GATEWAY", "NIMBUS_TEST_GATEWAY_ADMIN"):
        if os.environ.get(name):
            origins.add(os.environ[name].rstrip("/"))
    if os.environ.get("NIMBUS_STACK_API_BASE_PORT"):
        base, apis = int(os.environ["NIMBUS_STACK_API_BASE_PORT"]), int(os.environ.get("NIMBUS_STACK_APIS", "3"))
        origins.update(f"http://127.0.0.1:{base + i}" for i in range(1, apis + 1))
    return origins


def _tap_events(response, what, schemas):
    """Checks each event of a streamed text/event-stream as the test reads its lines."""
    original = response.iter_lines

    def iter_lines(*args, **kwargs):
        name, data = "message", []
        for line in original(*args, **kwargs):
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            if text == "":
                if data and name in schemas:
                    payload = "\n".join(data).encode()
                    errors = _check_json(spec(), spec().resolve(schemas[name]), payload)
                    if errors:
                        _record(f"{what} event {name}", errors)
                name, data = "message", []
            elif text.startswith("event:"):
                name = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].lstrip(" "))
            yield line

    response.iter_lines = iter_lines


def install():
    """Checks every response of `requests` (all suites use it) from then on."""
    if getattr(requests.Session.send, "_openapi_checked", False):
        return
    origins = _checked_origins()
    original_send = requests.Session.send

    def send(self, request, **kwargs):
        response = original_send(self, request, **kwargs)
        try:
            url = urllib.parse.urlsplit(request.url)
            origin = f"{url.scheme}://{url.netloc}"
            if origin not in origins or UNCHECKED_PATHS.match(url.path):
                return response
            streamed = bool(kwargs.get("stream"))
            what = f"{request.method} {url.path} -> {response.status_code}"
            errors = check(request.method, url.path, response.status_code, response.headers,
                           None if streamed else response.content, streamed=streamed)
            if errors:
                _record(what, errors)
            if streamed and _media_type(response.headers) == "text/event-stream":
                schemas = event_schemas(request.method, url.path)
                if schemas:
                    _tap_events(response, what, schemas)
        except Exception as e:  # a bug in the checker must not look like one in the API
            _record("openapi_check itself", [repr(e)])
        return response

    send._openapi_checked = True
    requests.Session.send = send
