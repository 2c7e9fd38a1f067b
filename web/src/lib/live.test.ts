// watchResults against scripted streams: how it reconnects, refreshes and stops.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

const auth = vi.hoisted(() => ({
  token: "t1",
  refreshes: 0,
  refreshOk: true,
  signedIn: true,
}));
vi.mock("./auth", () => ({
  accessToken: async () => (auth.signedIn ? auth.token : null),
  refresh: async () => {
    auth.refreshes++;
    if (!auth.refreshOk) auth.signedIn = false;
    else auth.token = `t${auth.refreshes + 1}`;
    return auth.refreshOk;
  },
  session: { get: () => (auth.signedIn ? {} : null) },
}));

import { watchResults, type LiveState, type LiveStop } from "./live";

const results = (total: number) => JSON.stringify({ poll_id: "p", total_votes: total, options: [], closed: false });
const stream = (text: string) =>
  new Response(new ReadableStream({ start: (c) => (c.enqueue(new TextEncoder().encode(text)), c.close()) }), {
    status: 200,
    headers: { "Content-Type": "text/event-stream" },
  });
const problem = (status: number, code: string) =>
  new Response(JSON.stringify({ type: `urn:nimbus:problem:${code}`, title: code, status, detail: code, code }), {
    status,
    headers: { "Content-Type": "application/problem+json" },
  });

function run(answers: (() => Response)[]) {
  const seen: number[] = [];
  const states: LiveState[] = [];
  const tokens: string[] = [];
  let stopped: LiveStop | null = null;
  const stop = new AbortController();
  globalThis.fetch = vi.fn(async (_url: unknown, init?: RequestInit) => {
    tokens.push(String((init?.headers as Record<string, string>).Authorization));
    const next = answers.shift();
    if (!next) {
      stop.abort();
      throw new DOMException("aborted", "AbortError");
    }
    return next();
  }) as typeof fetch;
  const done = watchResults(
    "p",
    { results: (r) => seen.push(r.total_votes), state: (s) => states.push(s), stopped: (w) => (stopped = w) },
    stop.signal,
  );
  return { done, seen, states, tokens, stopped: () => stopped };
}

beforeEach(() => {
  vi.useFakeTimers();
  Object.assign(auth, { token: "t1", refreshes: 0, refreshOk: true, signedIn: true });
});
afterEach(() => vi.useRealTimers());

describe("watchResults", () => {
  it("reconnects after the server's retry when a stream ends without a word (an instance went away)", async () => {
    const w = run([() => stream(`retry: 1000\n\nevent: results\ndata: ${results(1)}\n\n`), () => stream(`event: results\ndata: ${results(2)}\n\n`)]);
    await vi.runAllTimersAsync();
    await w.done;
    expect(w.seen).toEqual([1, 2]);
    expect(w.states).toContain("reconnecting");
    expect(auth.refreshes).toBe(0);
  });

  it("refreshes the token and reconnects at once after `end: token_expired`", async () => {
    const w = run([
      () => stream(`event: results\ndata: ${results(1)}\n\nevent: end\ndata: {"reason":"token_expired"}\n\n`),
      () => stream(`event: results\ndata: ${results(1)}\n\n`),
    ]);
    await vi.runAllTimersAsync();
    await w.done;
    expect(auth.refreshes).toBe(1);
    expect(w.tokens.slice(0, 2)).toEqual(["Bearer t1", "Bearer t2"]);
  });

  it("stops, signed out, when a revoked session cannot be refreshed", async () => {
    auth.refreshOk = false;
    const w = run([() => stream(`event: results\ndata: ${results(3)}\n\nevent: end\ndata: {"reason":"token_revoked"}\n\n`)]);
    await vi.runAllTimersAsync();
    await w.done;
    expect(w.stopped()).toBe("signed_out");
  });

  it("stops when the poll is gone or its results are hidden, and waits out a 429", async () => {
    const gone = run([() => problem(404, "not_found")]);
    await vi.runAllTimersAsync();
    await gone.done;
    expect(gone.stopped()).toBe("gone");

    const busy = run([
      () => {
        const r = problem(429, "too_many_streams");
        r.headers.set("Retry-After", "5");
        return r;
      },
      () => problem(403, "results_hidden"),
    ]);
    await vi.advanceTimersByTimeAsync(4000);
    expect((globalThis.fetch as ReturnType<typeof vi.fn>).mock.calls.length).toBe(1);
    await vi.runAllTimersAsync();
    await busy.done;
    expect(busy.stopped()).toBe("hidden");
  });
});
