// A Server-Sent Events parser (the WHATWG "event stream" format) for streams read with
// fetch(): EventSource cannot send the Authorization header the API needs.

export interface SseEvent {
  event: string;
  data: string;
}

export interface SseParser {
  /** Feeds decoded text; calls back once per complete event. */
  push(text: string): void;
  /** The last `retry:` the server asked for, in ms (null if none). */
  retry(): number | null;
}

export function sseParser(onEvent: (e: SseEvent) => void): SseParser {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let retry: number | null = null;

  function line(text: string): void {
    if (text === "") {
      if (data.length > 0) onEvent({ event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return; // comment (heartbeat)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }

  return {
    push(text: string) {
      buffer += text;
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        if (end < 0) break;
        // A lone \r at the very end may be the first half of \r\n: wait for more.
        if (buffer[end] === "\r" && end === buffer.length - 1) break;
        const length = buffer.startsWith("\r\n", end) ? 2 : 1;
        line(buffer.slice(0, end));
        buffer = buffer.slice(end + length);
      }
    },
    retry: () => retry,
  };
}
