// bench/images.py's sharp anchor: the worker's two variants (src/worker/thumbnails.cpp)
// of every file, made by sharp as a Node backend would, `inFlight` files at a time.
//
// Same settings as the worker: each variant decodes the original on its own (shrink-on-
// load), auto-rotated by EXIF orientation, sRGB, metadata stripped (sharp's default),
// a corrupt file an error (failOn 'error', the worker's fail_on=error); one libvips
// thread per image and no operation cache, as the worker runs libvips.
//   thumb:   256x256 cover crop to the centre (enlarging a smaller image), WebP q80
//   preview: within 1280x1280, never enlarged, alpha flattened on white, JPEG q82,
//            optimised Huffman tables, progressive (libvips' interlace)
//
// Usage: node variants.js <in-flight> <file>...   (prints one JSON line)
'use strict';

const fs = require('node:fs/promises');

const inFlight = Number(process.argv[2]);
const files = process.argv.slice(3);
if (!(inFlight >= 1) || files.length === 0) {
  console.error('usage: node variants.js <in-flight> <file>...');
  process.exit(2);
}
// sharp runs each pipeline on libuv's thread pool (4 threads by default): it must hold
// `inFlight` pipelines at once. Set before the pool's first use.
process.env.UV_THREADPOOL_SIZE = String(Math.max(4, inFlight));
const sharp = require('sharp');

sharp.concurrency(1);
sharp.cache(false);

async function variants(original) {
  const thumb = await sharp(original, { failOn: 'error' })
    .rotate()
    .resize(256, 256, { fit: 'cover', position: 'centre' })
    .webp({ quality: 80 })
    .toBuffer();
  const preview = await sharp(original, { failOn: 'error' })
    .rotate()
    .resize(1280, 1280, { fit: 'inside', withoutEnlargement: true })
    .flatten({ background: '#ffffff' })
    .jpeg({ quality: 82, optimiseCoding: true, progressive: true })
    .toBuffer();
  return thumb.length + preview.length;
}

async function main() {
  let next = 0;
  let bytes = 0;
  const failures = [];
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  async function lane() {
    while (next < files.length) {
      const file = files[next++];
      try {
        bytes += await variants(await fs.readFile(file));
      } catch (e) {
        failures.push(`${file}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const used = process.cpuUsage(cpu);
  console.log(JSON.stringify({
    sharp: sharp.versions.sharp,
    vips: sharp.versions.vips,
    images: files.length - failures.length,
    failures,
    seconds,
    cpu_seconds: (used.user + used.system) / 1e6,
    bytes,
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
