// The rendered API and worker Deployments of an overlay, made runnable by `podman kube
// play` on this machine against a running local stack's services: host network, one
// replica, free ports, the Secrets filled from the stack's own settings (written to a
// private temporary file, never to the repo). Everything else of the manifests is kept:
// images, envFrom ConfigMaps (hashed names), Secret volumes, securityContext, resources,
// probes, lifecycle.
//
//   node tools/kube-play.mjs OVERLAY STACK_ENV API_PORT OPS_PORT WORKER_PORT DIR
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { stringify } from "yaml";
import { render } from "./render.mjs";

const [overlay, stackEnvFile, apiPort, opsPort, workerPort, dir] = process.argv.slice(2, 8);
const stackEnv = Object.fromEntries(
  readFileSync(stackEnvFile, "utf8").split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
);
// The app's own secrets live in supervisord's program environments of the stack, one
// per process (api-1's, worker-1's).
const supervisor = readFileSync(stackEnv.NIMBUS_STACK_SUPERVISOR_CONF, "utf8");
const envOfProgram = (name) => Object.fromEntries(
  [...(new RegExp(`^\\[program:${name}\\][\\s\\S]*?^environment=(.*)$`, "m").exec(supervisor)?.[1] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
);
const programEnv = envOfProgram("api-1");
const workerEnv = envOfProgram("worker-1");

const objects = render(overlay);
const keep = objects.filter(
  (o) => o.kind === "ConfigMap" || (o.kind === "Deployment" && ["nimbus-api", "nimbus-worker"].includes(o.metadata.name)),
);
const ports = { "nimbus-api": { http: apiPort, ops: opsPort }, "nimbus-worker": { http: workerPort } };
for (const d of keep.filter((o) => o.kind === "Deployment")) {
  d.spec.replicas = 1;
  const pod = d.spec.template.spec;
  pod.hostNetwork = true;
  for (const c of pod.containers) {
    const p = ports[d.metadata.name];
    const override = { NIMBUS_HTTP_ADDRESS: "127.0.0.1", NIMBUS_HTTP_PORT: p.http, NIMBUS_INSTANCE: `kube-${d.metadata.name}` };
    if (p.ops) Object.assign(override, { NIMBUS_OPS_ADDRESS: "127.0.0.1", NIMBUS_OPS_PORT: p.ops });
    c.env = [...(c.env ?? []).filter((e) => !(e.name in override)), ...Object.entries(override).map(([name, value]) => ({ name, value: String(value) }))];
    // podman 4.3 reads a secretKeyRef from a podman secret of its own name, not a key
    // of it: the gateway secret (the one such reference) is given as a value.
    for (const e of c.env) {
      if (e.valueFrom?.secretKeyRef?.key === "NIMBUS_GATEWAY_SECRET") {
        delete e.valueFrom;
        e.value = programEnv.NIMBUS_GATEWAY_SECRET;
      }
    }
    // On the host's network podman 4.3 refuses port mappings: the probes name the
    // ports by number instead.
    const byName = Object.fromEntries((c.ports ?? []).map((port) => [port.name, Number(p[port.name] ?? port.containerPort)]));
    delete c.ports;
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      if (probe?.httpGet && typeof probe.httpGet.port === "string") probe.httpGet.port = byName[probe.httpGet.port];
    }
  }
  // podman 4.3 writes a secret volume's files still base64-encoded (and crashes on one
  // without `optional`): the JWT key comes from a private folder of the host instead,
  // mounted read-only at the same place. Everything else stays as the cluster sees it.
  for (const v of pod.volumes ?? []) {
    if (v.secret?.secretName !== "nimbus-jwt") continue;
    delete v.secret;
    v.hostPath = { path: `${dir}/jwt`, type: "Directory" };
  }
}
// podman 4.3 lets envFrom override env (Kubernetes does the reverse), so the ports are
// set in each component's own ConfigMap, none in the shared one.
const cmOf = (prefix) => keep.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith(prefix));
for (const key of ["NIMBUS_HTTP_ADDRESS", "NIMBUS_HTTP_PORT"]) delete cmOf("nimbus-config").data[key];
Object.assign(cmOf("nimbus-api-config").data, { NIMBUS_HTTP_ADDRESS: "127.0.0.1", NIMBUS_HTTP_PORT: String(apiPort),
  NIMBUS_OPS_ADDRESS: "127.0.0.1", NIMBUS_OPS_PORT: String(opsPort) });
Object.assign(cmOf("nimbus-worker-config").data, { NIMBUS_HTTP_ADDRESS: "127.0.0.1", NIMBUS_HTTP_PORT: String(workerPort) });
// (the same: the init container's NIMBUS_MIGRATIONS=only must not lose to the shared
// ConfigMap's "wait", which moves to the serving containers' own)
delete cmOf("nimbus-config").data.NIMBUS_MIGRATIONS;
for (const prefix of ["nimbus-api-config", "nimbus-worker-config"]) cmOf(prefix).data.NIMBUS_MIGRATIONS = "wait";
for (const cm of keep.filter((o) => o.kind === "ConfigMap")) {
  // The local stack's storage, mail sink and issuer instead of the overlay's managed ones.
  if (cm.metadata.name.startsWith("nimbus-config")) {
    Object.assign(cm.data, {
      NIMBUS_S3_ENDPOINT: stackEnv.NIMBUS_TEST_S3_ENDPOINT,
      NIMBUS_S3_REGION: stackEnv.NIMBUS_TEST_S3_REGION,
      NIMBUS_S3_BUCKET: stackEnv.NIMBUS_TEST_S3_BUCKET,
      NIMBUS_SMTP_HOST: "127.0.0.1",
      NIMBUS_SMTP_PORT: stackEnv.NIMBUS_TEST_SMTP_PORT,
      NIMBUS_AUTH_ISSUER: stackEnv.NIMBUS_TEST_AUTH_ISSUER,
      NIMBUS_AUTH_COOKIE_SECURE: "0",
    });
  }
}
const b64 = (data) => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
// One Secret per process, as on a cluster (docs/adr/0011), each with the stack's role.
const storage = { NIMBUS_S3_ACCESS_KEY: stackEnv.NIMBUS_TEST_S3_ACCESS_KEY, NIMBUS_S3_SECRET_KEY: stackEnv.NIMBUS_TEST_S3_SECRET_KEY };
const appSecrets = {
  "nimbus-api": { NIMBUS_DATABASE_URL: programEnv.NIMBUS_DATABASE_URL, NIMBUS_REDIS_URL: stackEnv.NIMBUS_TEST_REDIS_URL, ...storage,
    NIMBUS_AUTH_CODE_SECRET: programEnv.NIMBUS_AUTH_CODE_SECRET },
  "nimbus-worker": { NIMBUS_DATABASE_URL: workerEnv.NIMBUS_DATABASE_URL, NIMBUS_REDIS_URL: stackEnv.NIMBUS_TEST_REDIS_URL,
    NIMBUS_AMQP_URL: stackEnv.NIMBUS_TEST_AMQP_URL, ...storage },
  "nimbus-migrate": { NIMBUS_DATABASE_URL: stackEnv.NIMBUS_TEST_DATABASE_URL },
};

// podman 4.3 reads envFrom.secretRef from a podman secret holding a JSON map of base64
// values (made with `podman secret create NAME DIR/NAME.json`, for each NAME of
// secrets.txt).
mkdirSync(`${dir}/jwt`, { recursive: true, mode: 0o755 });
for (const [name, data] of Object.entries(appSecrets)) {
  writeFileSync(`${dir}/${name}.json`, JSON.stringify(b64(data)), { mode: 0o600 });
}
writeFileSync(`${dir}/secrets.txt`, Object.keys(appSecrets).join("\n") + "\n");
// Readable by the pod's user (on a cluster: the Secret volume's 0440 and fsGroup).
copyFileSync(stackEnv.NIMBUS_TEST_JWT_KEY, `${dir}/jwt/k1.pem`);
chmodSync(`${dir}/jwt/k1.pem`, 0o444);
writeFileSync(`${dir}/pods.yaml`, keep.map((o) => stringify(o)).join("---\n"), { mode: 0o600 });
