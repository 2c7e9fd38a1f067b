// Test files: real JPEGs drawn by the browser's canvas (no image tool needed), a text
// file, and a file over the 25 MiB limit.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const dir = mkdtempSync(join(tmpdir(), "nimbus-browser-"));

/** JPEG files drawn in `page`: [{name, width, height, noise?}] → paths. */
export async function jpegs(page, specs) {
  const encoded = await page.evaluate(async (specs) => {
    const out = [];
    for (const [i, s] of specs.entries()) {
      const canvas = document.createElement("canvas");
      canvas.width = s.width;
      canvas.height = s.height;
      const g = canvas.getContext("2d");
      if (s.noise) {
        // Noise does not compress: a big file from a modest canvas.
        const img = g.createImageData(s.width, s.height);
        const words = new Uint32Array(img.data.buffer);
        let x = 2463534242 + i;
        for (let k = 0; k < words.length; k++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          words[k] = x | 0xff000000;
        }
        g.putImageData(img, 0, 0);
      } else {
        const hue = (i * 37) % 360;
        const gradient = g.createLinearGradient(0, 0, s.width, s.height);
        gradient.addColorStop(0, `hsl(${hue} 70% 55%)`);
        gradient.addColorStop(1, `hsl(${(hue + 120) % 360} 70% 35%)`);
        g.fillStyle = gradient;
        g.fillRect(0, 0, s.width, s.height);
        g.fillStyle = "rgba(255,255,255,0.85)";
        g.beginPath();
        g.arc(s.width / 2, s.height / 2, Math.min(s.width, s.height) / 4, 0, Math.PI * 2);
        g.fill();
        g.fillStyle = "#222";
        g.font = `bold ${Math.round(s.height / 6)}px sans-serif`;
        g.textAlign = "center";
        g.textBaseline = "middle";
        g.fillText(String(i + 1), s.width / 2, s.height / 2);
      }
      const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", s.noise ? 0.97 : 0.9));
      const bytes = new Uint8Array(await blob.arrayBuffer());
      let binary = "";
      for (let k = 0; k < bytes.length; k += 0x8000) binary += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
      out.push(btoa(binary));
    }
    return out;
  }, specs);
  return specs.map((s, i) => {
    const path = join(dir, s.name);
    writeFileSync(path, Buffer.from(encoded[i], "base64"));
    return path;
  });
}

export function textFile(name = "notes.txt") {
  const path = join(dir, name);
  writeFileSync(path, "Not a picture, whatever the name says.\n");
  return path;
}

/** A 30 MB file that starts like a JPEG: only its size is wrong. */
export function hugeFile(name = "huge.jpg", bytes = 30 * 1000 * 1000) {
  const path = join(dir, name);
  const data = Buffer.alloc(bytes);
  data.set([0xff, 0xd8, 0xff, 0xe0]);
  writeFileSync(path, data);
  return path;
}
