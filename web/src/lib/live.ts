// Live results of a poll: the SSE stream read with fetch(), reconnected on its own.
//
// The stream ends (a) with `event: end` when its token expired or was revoked: refresh
// the token and reconnect at once, or stop if the session is over; (b) without a word
// when its instance drains for a deploy or dies: reconnect after the server's `retry`
// (1 s) through the gateway, which picks a live instance; (c) on a network error: back
// off 1, 2, 4 … 15 s with jitter. Every connection starts with the current results, so
// nothing missed while away stays missing.
import { problemOf, type Results } from "../api/client";
import { accessToken, refresh, session } from "./auth";
import { sseParser } from "./sse";

export type LiveState = "connecting" | "live" | "reconnecting" | "stopped";
export type LiveStop = "hidden" | "gone" | "signed_out";

export interface LiveHandlers {
  results(results: Results): void;
  state(state: LiveState): void;
  stopped(why: LiveStop): void;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Watches a poll's results until `signal` aborts or watching cannot go on. */
export async function watchResults(pollId: string, on: LiveHandlers, signal: AbortSignal): Promise<void> {
  let failures = 0;
  let wait = 0;
  on.state("connecting");
  while (!signal.aborted) {
    if (wait > 0) {
      on.state("reconnecting");
      await sleep(wait, signal);
      if (signal.aborted) return;
    }
    const token = await accessToken();
    if (!token) return on.stopped("signed_out");
    let response: Response;
    try {
      response = await fetch(`/v1/polls/${encodeURIComponent(pollId)}/results/stream`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        signal,
        cache: "no-store",
      });
    } catch {
      if (signal.aborted) return;
      wait = backoff(++failures);
      continue;
    }
    if (!response.ok || !response.body) {
      const problem = await problemOf(response);
      if (problem.status === 401) {
        if (await refresh().catch(() => false)) {
          wait = 0;
          continue;
        }
        if (!session.get()) return on.stopped("signed_out");
        wait = backoff(++failures);
        continue;
      }
      if (problem.status === 403) return on.stopped("hidden");
      if (problem.status === 404) return on.stopped("gone");
      wait = problem.retryAfter !== null ? problem.retryAfter * 1000 : backoff(++failures);
      continue;
    }

    let ended: string | null = null;
    const parser = sseParser((e) => {
      if (e.event === "results") {
        failures = 0;
        on.state("live");
        on.results(JSON.parse(e.data) as Results);
      } else if (e.event === "end") {
        ended = (JSON.parse(e.data) as { reason?: string }).reason ?? "unknown";
      }
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch {
      // cut off mid-stream (the instance died): reconnect below
    }
    if (signal.aborted) return;
    if (ended === "token_expired" || ended === "token_revoked") {
      // A revoked session's refresh fails too; then the session is over.
      if (!(await refresh().catch(() => false)) && !session.get()) return on.stopped("signed_out");
      wait = 0;
    } else {
      wait = ended === null ? jitter(parser.retry() ?? 1000) : backoff(++failures);
    }
  }
}

function jitter(ms: number): number {
  return ms * (0.75 + Math.random() * 0.5);
}

function backoff(failures: number): number {
  return jitter(Math.min(15_000, 1000 * 2 ** Math.min(failures - 1, 4)));
}
