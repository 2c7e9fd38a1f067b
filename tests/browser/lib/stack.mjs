// The stack under test: `./stack test` exports its addresses; by hand, point
// NIMBUS_STACK_ENV at a stack.env (e.g. .run/local/stack.env of `./stack up`).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

if (process.env.NIMBUS_STACK_ENV) {
  for (const line of readFileSync(process.env.NIMBUS_STACK_ENV, "utf8").split("\n")) {
    const at = line.indexOf("=");
    if (at > 0 && !(line.slice(0, at) in process.env)) process.env[line.slice(0, at)] = line.slice(at + 1);
  }
}
if (!process.env.NIMBUS_TEST_GATEWAY) throw new Error("no stack: run through ./stack test, or set NIMBUS_STACK_ENV");

export const GATEWAY = process.env.NIMBUS_TEST_GATEWAY;
export const MAILDEV = process.env.NIMBUS_TEST_MAILDEV;
export const SUPERVISOR_CONF = process.env.NIMBUS_STACK_SUPERVISOR_CONF;

export function ctl(...args) {
  return execFileSync("supervisorctl", ["-c", SUPERVISOR_CONF, ...args], { encoding: "utf8" }).trim();
}

export function pidOf(program) {
  const out = ctl("pid", program);
  return /^\d+$/.test(out) ? Number(out) : 0;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** The 6-digit code of the newest email to `email` after the first `seen` ones. */
export async function codeFor(email, seen = 0, timeoutMs = 15_000) {
  let code = null;
  await waitUntil(async () => {
    const mails = (await (await fetch(`${MAILDEV}/email`)).json()).filter((m) => m.to.some((t) => t.address === email));
    if (mails.length <= seen) return false;
    code = /\b(\d{6})\b/.exec(mails[mails.length - 1].text)?.[1] ?? null;
    return code !== null;
  }, timeoutMs, `a code in the inbox of ${email}`);
  return code;
}

export async function mailCount(email) {
  return (await (await fetch(`${MAILDEV}/email`)).json()).filter((m) => m.to.some((t) => t.address === email)).length;
}
