// Responses checked against docs/api/openapi.yaml, by the same rules as the Python
// suites' tests/e2e/openapi_check.py: the operation exists, its status is declared (a
// 2xx/3xx explicitly, an error by its own status or `default`), the media type is
// declared, a JSON body validates (JSON Schema 2020-12, Ajv), required headers are there.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import { parse } from "yaml";

const spec = parse(readFileSync(new URL("../../../docs/api/openapi.yaml", import.meta.url), "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
ajv.addSchema({ ...spec, $id: "openapi" }, "openapi");

const routes = Object.entries(spec.paths)
  .map(([template, item]) => ({
    template,
    item,
    params: (template.match(/\{/g) ?? []).length,
    pattern: new RegExp("^" + template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+") + "$"),
  }))
  .sort((a, b) => a.params - b.params || a.template.localeCompare(b.template));

function resolve(node) {
  while (node && node.$ref) {
    node = node.$ref
      .slice(2)
      .split("/")
      .reduce((at, key) => at[key.replace(/~1/g, "/").replace(/~0/g, "~")], spec);
  }
  return node;
}

const validators = new Map();
function validate(pointer, value) {
  let v = validators.get(pointer);
  if (!v) {
    v = ajv.getSchema(`openapi#${pointer}`);
    if (!v) throw new Error(`no schema at ${pointer}`);
    validators.set(pointer, v);
  }
  if (v(value)) return [];
  return (v.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || "(body)"}: ${e.message}`);
}

/** The JSON pointer of the schema of a (resolved) content entry. */
function pointerOf(path) {
  return "/" + path.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
}

function operation(method, path) {
  for (const route of routes) {
    if (route.pattern.test(path)) {
      let op = route.item[method.toLowerCase()];
      if (!op && method.toUpperCase() === "HEAD") op = route.item.get;
      return { template: route.template, op };
    }
  }
  return { template: null, op: null };
}

/**
 * Mismatches between one response and the document ([] when it matches). `headers`: a
 * plain object with lower-case names; `body`: the text, or null when not read (a stream).
 */
export function check(method, path, status, headers, body) {
  const media = (headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  const { template, op } = operation(method, path);
  if (!op) {
    const where = template ? `${method} not in the document for ${template}` : "no such path in the document";
    if (status < 400) return [`${status} answered, but ${where}`];
    if (!body) return [];
    if (media !== "application/problem+json") return [`${status} ${media} outside the document; problem+json expected`];
    return jsonErrors("/components/schemas/Problem", body);
  }
  const lower = method.toLowerCase() === "head" ? "get" : method.toLowerCase();
  const responses = op.responses;
  let key = [String(status), `${Math.floor(status / 100)}XX`].find((k) => responses[k]);
  if (!key) {
    if (status < 400 || !responses.default) return [`status ${status} is not declared for ${method} ${template}`];
    key = "default";
  }
  let pointerBase = ["paths", template, lower, "responses", key];
  const errors = [];
  let declared = responses[key];
  if (declared.$ref) pointerBase = declared.$ref.slice(2).split("/");
  declared = resolve(declared);
  for (const [name, header] of Object.entries(declared.headers ?? {})) {
    if (resolve(header).required && !(name.toLowerCase() in headers)) errors.push(`required header ${name} missing from ${status}`);
  }
  if (method.toUpperCase() === "HEAD") return errors;
  const content = declared.content ?? {};
  if (Object.keys(content).length === 0) {
    if (body) errors.push(`${status} has a body (${media}) but declares none`);
    return errors;
  }
  const entryKey = media in content ? media : Object.keys(content).find((k) => k.endsWith("/*") && media.startsWith(k.slice(0, -1)));
  if (!entryKey) return [...errors, `${status} answered as ${JSON.stringify(media)}; declared: ${Object.keys(content).join(", ")}`];
  if (body === null || !media.endsWith("json")) return errors;
  return [...errors, ...jsonErrors(pointerOf([...pointerBase, "content", entryKey, "schema"]), body)];
}

function jsonErrors(pointer, body) {
  let value;
  try {
    value = JSON.parse(body);
  } catch (e) {
    return [`body is not JSON (${e.message}): ${body.slice(0, 120)}`];
  }
  return validate(pointer, value);
}

/** Schemas of the events of a text/event-stream operation (its x-events). */
export function eventSchemaPointer(path, event) {
  const { template, op } = operation("GET", path);
  const events = op && resolve(op.responses["200"])?.content?.["text/event-stream"]?.["x-events"];
  if (!events || !events[event]) return null;
  return events[event].$ref ? events[event].$ref.slice(1) : pointerOf(["paths", template, "get", "responses", "200", "content", "text/event-stream", "x-events", event]);
}

export function checkEvent(path, event, data) {
  const pointer = eventSchemaPointer(path, event);
  return pointer ? jsonErrors(pointer, data) : [];
}
