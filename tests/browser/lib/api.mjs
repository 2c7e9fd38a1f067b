// Calls the test makes itself (a third voter, the server's own verdicts), through the
// gateway, each answer checked against the OpenAPI document like the page's.
import { check } from "./openapi.mjs";
import { codeFor, GATEWAY, mailCount } from "./stack.mjs";

export const problems = [];

export async function api(method, path, { token, json, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (json !== undefined) h["Content-Type"] = "application/json";
  const response = await fetch(GATEWAY + path, { method, headers: h, body: json !== undefined ? JSON.stringify(json) : body, redirect: "manual" });
  const text = await response.text();
  const plain = Object.fromEntries([...response.headers].map(([k, v]) => [k.toLowerCase(), v]));
  const errors = check(method, new URL(GATEWAY + path).pathname, response.status, plain, text);
  if (errors.length) problems.push(`${method} ${path} -> ${response.status}: ${errors.join("; ")}`);
  return { status: response.status, headers: plain, body: text ? (plain["content-type"]?.includes("json") ? JSON.parse(text) : text) : null };
}

/** A user signed in through the API: their access token. */
export async function signInByApi(email) {
  const seen = await mailCount(email);
  const started = await api("POST", "/v1/auth/email/start", { json: { email } });
  if (started.status !== 202) throw new Error(`start: ${started.status}`);
  const verified = await api("POST", "/v1/auth/email/verify", { json: { email, code: await codeFor(email, seen) } });
  if (verified.status !== 200) throw new Error(`verify: ${verified.status}`);
  return verified.body.access_token;
}
