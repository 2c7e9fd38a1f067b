// After `vite build`: the OpenAPI document as JSON (nginx serves it at /v1/openapi.json),
// and a .gz beside every text file for nginx's gzip_static (compressed once, at level 9).
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parse } from "yaml";

const dist = new URL("../dist/", import.meta.url).pathname;
const spec = parse(readFileSync(new URL("../../docs/api/openapi.yaml", import.meta.url), "utf8"));
writeFileSync(join(dist, "openapi.json"), JSON.stringify(spec));

const compressible = /\.(js|css|html|json|svg|txt|webmanifest)$/;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (compressible.test(name)) writeFileSync(path + ".gz", gzipSync(readFileSync(path), { level: 9 }));
  }
}
walk(dist);
console.log("wrote dist/openapi.json and .gz files");
