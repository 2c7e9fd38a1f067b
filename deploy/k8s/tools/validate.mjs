// Renders every kustomization of deploy/k8s (the base and each overlay), validates each
// object against its schema and runs Nimbus's policy checks on the render. Exit code 1
// on any finding. No cluster is needed.
//
//   node tools/validate.mjs [dir ...]        (default: base and every overlays/*)
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { checkPolicy } from "./policy.mjs";
import { k8sDir, render } from "./render.mjs";
import { validateSchemas } from "./schema.mjs";

// What the policy checks measure against: the gateway's upstream keep-alive, read from
// the gateway image's own nginx configuration.
export function context() {
  const conf = readFileSync(path.join(k8sDir, "../containers/gateway/nginx.conf.template"), "utf8");
  const upstream = /upstream nimbus_api \{([^}]*)\}/.exec(conf)?.[1] ?? "";
  const keepalive = /keepalive_timeout\s+(\d+)s;/.exec(upstream);
  if (!keepalive) throw new Error("no keepalive_timeout in the gateway's upstream block");
  return { gatewayKeepAliveSeconds: Number(keepalive[1]) };
}

export const renders = () => [
  "base",
  ...readdirSync(path.join(k8sDir, "overlays"), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `overlays/${d.name}`),
];

export async function check(dir, ctx = context()) {
  const objects = render(dir);
  return { objects, errors: [...(await validateSchemas(objects)), ...checkPolicy(objects, ctx)] };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : renders();
  let failed = 0;
  for (const dir of dirs) {
    const { objects, errors } = await check(dir);
    console.log(`${dir}: ${objects.length} objects, ${errors.length ? `${errors.length} problems` : "valid"}`);
    for (const e of errors) console.log(`  ${e}`);
    failed += errors.length;
  }
  process.exit(failed ? 1 : 0);
}
