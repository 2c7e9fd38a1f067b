// .github/workflows pass actionlint and shellcheck; a broken workflow does not.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { lintWorkflow, workflowsDir } from "../../deploy/k8s/tools/lint-workflows.mjs";

test("every workflow is clean", async () => {
  const files = readdirSync(workflowsDir).filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.includes("ci.yml") && files.includes("release.yml"));
  for (const f of files) assert.deepEqual(await lintWorkflow(path.join(workflowsDir, f)), [], f);
});

test("a broken workflow is not", async () => {
  const broken = `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    needs: missing
    steps:
      - run: echo \${{ github.evnt.name }}
      - run: cd $DIR; rm -rf $DIR/*
`;
  const findings = (await lintWorkflow("broken.yml", broken)).join("\n");
  assert.match(findings, /needs.*missing/);
  assert.match(findings, /evnt/);
  assert.match(findings, /SC2086|SC2115|SC2164/);
});
