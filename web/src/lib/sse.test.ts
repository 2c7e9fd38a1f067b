import { describe, expect, it } from "vitest";
import { sseParser, type SseEvent } from "./sse";

function parse(chunks: string[]) {
  const events: SseEvent[] = [];
  const parser = sseParser((e) => events.push(e));
  for (const c of chunks) parser.push(c);
  return { events, retry: parser.retry() };
}

describe("sseParser", () => {
  it("reads the API's stream: retry, results, heartbeat, end", () => {
    const { events, retry } = parse([
      "retry: 1000\n\nevent: results\ndata: {\"total_votes\":0}\n\n",
      ": heartbeat\n\n",
      "event: end\ndata: {\"reason\":\"token_expired\"}\n\n",
    ]);
    expect(retry).toBe(1000);
    expect(events).toEqual([
      { event: "results", data: '{"total_votes":0}' },
      { event: "end", data: '{"reason":"token_expired"}' },
    ]);
  });

  it("joins events split anywhere, including inside \\r\\n", () => {
    const text = "event: results\r\ndata: a\r\ndata: b\r\n\r\n";
    for (let cut = 0; cut <= text.length; cut++) {
      const { events } = parse([text.slice(0, cut), text.slice(cut)]);
      expect(events).toEqual([{ event: "results", data: "a\nb" }]);
    }
  });

  it("keeps an unfinished event until its blank line", () => {
    expect(parse(["event: results\ndata: x\n"]).events).toEqual([]);
  });
});
