import { describe, expect, it } from "vitest";
import { checkFile, MAX_BYTES, sniff } from "./files";

const bytes = (...parts: (string | number[])[]) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === "string" ? [...p].map((c) => c.charCodeAt(0)) : p)));

describe("sniff, as the API does", () => {
  it("knows the accepted formats by their first bytes", () => {
    expect(sniff(bytes([0xff, 0xd8, 0xff, 0xe0]))).toBe("image/jpeg");
    expect(sniff(bytes("\x89PNG\r\n\x1a\n"))).toBe("image/png");
    expect(sniff(bytes("GIF89a"))).toBe("image/gif");
    expect(sniff(bytes("RIFF", [0, 0, 0, 0], "WEBPVP8 "))).toBe("image/webp");
    expect(sniff(bytes([0, 0, 0, 24], "ftypavif", [0, 0, 0, 0], "mif1"))).toBe("image/avif");
    expect(sniff(bytes([0, 0, 0, 24], "ftypmif1", [0, 0, 0, 0], "heic"))).toBe("image/heic");
  });

  it("refuses everything else, whatever the file is called", () => {
    expect(sniff(bytes("%PDF-1.7\n"))).toBeNull();
    expect(sniff(bytes("<svg xmlns="))).toBeNull();
    expect(sniff(bytes([0, 0, 0, 24], "ftypisom", [0, 0, 0, 0], "mp41"))).toBeNull();
  });
});

describe("checkFile", () => {
  it("gives the API's codes", async () => {
    expect(await checkFile(new Blob([]))).toEqual({ refusal: "empty_file" });
    expect(await checkFile(new Blob(["hello"]))).toEqual({ refusal: "unsupported_image_type" });
    const big = new Blob([new Uint8Array([0xff, 0xd8, 0xff]), new Uint8Array(MAX_BYTES)]);
    expect(await checkFile(big)).toEqual({ refusal: "payload_too_large" });
    expect(await checkFile(new Blob([new Uint8Array([0xff, 0xd8, 0xff, 0xdb])]))).toEqual({ type: "image/jpeg" });
  });
});
