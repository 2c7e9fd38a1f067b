// What the server accepts, checked before a byte is sent, with the server's own codes
// (so the message is the same whichever side refuses): the type from the first bytes,
// as the API sniffs it (src/images/sniff.cpp), and the 25 MiB limit.

export const MAX_BYTES = 25 * 1024 * 1024;
export const ACCEPT = "image/jpeg,image/png,image/gif,image/webp,image/avif,image/heic,image/heif,.heic,.heif,.avif";
export type ImageType = "image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/avif" | "image/heic";

const ascii = (bytes: Uint8Array, from: number, length: number) =>
  String.fromCharCode(...bytes.subarray(from, from + length));

/** The image type of a file's first bytes, or null when the API would refuse it. */
export function sniff(bytes: Uint8Array): ImageType | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
  if (bytes.length >= 8 && ascii(bytes, 0, 8) === "\x89PNG\r\n\x1a\n") return "image/png";
  if (bytes.length >= 6 && ["GIF87a", "GIF89a"].includes(ascii(bytes, 0, 6))) return "image/gif";
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") return "image/webp";
  if (bytes.length >= 12 && ascii(bytes, 4, 4) === "ftyp") {
    const size = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
    const ftyp = Math.min(size, bytes.length);
    for (let at = 8; at < ftyp && ftyp - at >= 4; at += at === 8 ? 8 : 4) {
      const brand = ascii(bytes, at, 4);
      if (brand === "avif" || brand === "avis") return "image/avif";
      if (["heic", "heix", "heim", "heis"].includes(brand)) return "image/heic";
    }
  }
  return null;
}

export type Refusal = "empty_file" | "payload_too_large" | "unsupported_image_type";

/** The file's type, or the code the API would refuse it with. */
export async function checkFile(file: Blob): Promise<{ type: ImageType } | { refusal: Refusal }> {
  if (file.size === 0) return { refusal: "empty_file" };
  if (file.size > MAX_BYTES) return { refusal: "payload_too_large" };
  const head = new Uint8Array(await file.slice(0, 64).arrayBuffer());
  const type = sniff(head);
  return type ? { type } : { refusal: "unsupported_image_type" };
}

export function formatBytes(bytes: number, locale: string): string {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte"] as const;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return new Intl.NumberFormat(locale, {
    style: "unit",
    unit: units[unit],
    unitDisplay: "short",
    maximumFractionDigits: unit === 0 ? 0 : 1,
  }).format(value);
}
