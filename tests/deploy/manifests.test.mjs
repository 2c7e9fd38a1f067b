// deploy/k8s: every kustomization renders, validates against its schemas and passes the
// policy checks; and the checks do fail on manifests that break their rules (each case
// below changes one thing of a real render).
import assert from "node:assert/strict";
import path from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkPolicy } from "../../deploy/k8s/tools/policy.mjs";
import { render } from "../../deploy/k8s/tools/render.mjs";
import { validateSchemas } from "../../deploy/k8s/tools/schema.mjs";
import { check, context, renders } from "../../deploy/k8s/tools/validate.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const ctx = context();
const clone = (o) => structuredClone(o);
const find = (objects, kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const container = (objects, name) => find(objects, "Deployment", name).spec.template.spec.containers[0];

describe("every kustomization", () => {
  for (const dir of renders()) {
    test(`${dir} renders, validates and passes the policy checks`, async () => {
      const { objects, errors } = await check(dir, ctx);
      assert.deepEqual(errors, []);
      assert.ok(objects.length > 20);
    });
  }
});

describe("the serverless component", () => {
  test("puts the sender between the event source and the function", () => {
    const objects = render("overlays/dev");
    const source = find(objects, "RabbitmqSource", "nimbus-image-jobs");
    assert.deepEqual(source.spec.sink.ref, { apiVersion: "v1", kind: "Service", name: "nimbus-function-sender" });
    const token = (c) => c.env.find((e) => e.name === "NIMBUS_FUNCTION_TOKEN")?.valueFrom?.secretKeyRef;
    const fn = find(objects, "Service", "nimbus-thumbnails").spec.template.spec.containers[0];
    assert.deepEqual(token(fn), { name: "nimbus-function", key: "token" });
    assert.deepEqual(token(container(objects, "nimbus-function-sender")), { name: "nimbus-function", key: "token" });
    // The function admits Knative's data plane (through which the sender's requests
    // come) and Prometheus, no longer the source's adapter.
    const fnPolicy = find(objects, "NetworkPolicy", "thumbnails-from-knative");
    assert.ok(!JSON.stringify(fnPolicy.spec.ingress).includes("eventing.knative.dev/source"));
  });
});

describe("the checks refuse", () => {
  let prod, dev;
  before(() => {
    prod = render("overlays/prod");
    dev = render("overlays/dev"); // with the serverless component
  });
  const policyOf = (objects) => checkPolicy(objects, ctx);

  test("a manifest without probes (rendered by kustomize from a fixture)", async () => {
    const { errors } = await check(path.join(here, "fixtures/no-probes"), ctx);
    assert.ok(errors.some((e) => /Deployment\/nimbus-api container api: no readinessProbe/.test(e)), errors.join("\n"));
    assert.ok(errors.some((e) => /no livenessProbe/.test(e)));
  });

  test("a container without limits, running as root, with a writable root", () => {
    const objects = clone(prod);
    const c = container(objects, "nimbus-worker");
    delete c.resources.limits;
    c.securityContext.runAsNonRoot = false;
    c.securityContext.readOnlyRootFilesystem = false;
    const errors = policyOf(objects).join("\n");
    assert.match(errors, /nimbus-worker container worker: no cpu in resources.limits/);
    assert.match(errors, /runAsNonRoot is not true/);
    assert.match(errors, /root file system is not read-only/);
  });

  test("a preStop sleep no longer than the gateway's keep-alive", () => {
    const objects = clone(prod);
    container(objects, "nimbus-api").lifecycle.preStop.exec.command = ["/bin/sleep", String(ctx.gatewayKeepAliveSeconds)];
    assert.match(policyOf(objects).join("\n"), /preStop sleep 1 s is not longer than the gateway's upstream keep-alive/);
  });

  test("a grace period shorter than preStop + drain + shutdown", () => {
    const objects = clone(prod);
    find(objects, "Deployment", "nimbus-worker").spec.template.spec.terminationGracePeriodSeconds = 30;
    assert.match(policyOf(objects).join("\n"), /grace period 30 s does not cover .* worker drain 23 = 31 s/);
  });

  test("an HPA whose Deployment does not exist, and one without scale-down stabilisation", () => {
    const objects = clone(prod);
    const hpa = find(objects, "HorizontalPodAutoscaler", "nimbus-api");
    hpa.spec.scaleTargetRef.name = "nimbus-apii";
    delete hpa.spec.behavior.scaleDown;
    const errors = policyOf(objects).join("\n");
    assert.match(errors, /targets Deployment\/nimbus-apii, which is not a Deployment of this render/);
    assert.match(errors, /scale-down not stabilised/);
  });

  test("a rollout that may lower the serving count", () => {
    const objects = clone(prod);
    find(objects, "Deployment", "nimbus-api").spec.strategy.rollingUpdate.maxUnavailable = 1;
    assert.match(policyOf(objects).join("\n"), /nimbus-api: rolling update without maxUnavailable 0/);
  });

  test("metrics that no ServiceMonitor scrapes", () => {
    const objects = clone(prod).filter((o) => !(o.kind === "ServiceMonitor" && o.metadata.name === "nimbus-api"));
    assert.match(policyOf(objects).join("\n"), /no ServiceMonitor scrapes its metrics port 9090/);
  });

  test("a gateway secret other than the instances'", () => {
    const objects = clone(prod);
    const env = container(objects, "nimbus-gateway").env.find((e) => e.name === "NIMBUS_GATEWAY_SECRET");
    env.valueFrom.secretKeyRef.name = "other-secret";
    assert.match(policyOf(objects).join("\n"), /its NIMBUS_GATEWAY_SECRET is not the one the gateway sends/);
  });

  test("an API port open to more than the gateway, and no default deny", () => {
    let objects = clone(prod);
    find(objects, "NetworkPolicy", "api-from-gateway").spec.ingress[0].from = [{ namespaceSelector: {} }];
    objects = objects.filter((o) => o.metadata.name !== "default-deny-ingress");
    const errors = policyOf(objects).join("\n");
    assert.match(errors, /api-from-gateway: lets more than the gateway reach/);
    assert.match(errors, /no default deny of ingress/);
  });

  test("a function without its token, and a source that posts to it directly", () => {
    const objects = clone(dev);
    const fn = find(objects, "Service", "nimbus-thumbnails").spec.template.spec.containers[0];
    fn.env = fn.env.filter((e) => e.name !== "NIMBUS_FUNCTION_TOKEN");
    find(objects, "RabbitmqSource", "nimbus-image-jobs").spec.sink.ref = { apiVersion: "serving.knative.dev/v1", kind: "Service", name: "nimbus-thumbnails" };
    const errors = policyOf(objects).join("\n");
    assert.match(errors, /Service\/nimbus-thumbnails: function mode without NIMBUS_FUNCTION_TOKEN from a Secret/);
    assert.match(errors, /RabbitmqSource\/nimbus-image-jobs: posts to the function nimbus-thumbnails directly, without its token/);
  });

  test("a sender with another token than the function's, or none in front of it", () => {
    let objects = clone(dev);
    const sender = container(objects, "nimbus-function-sender");
    sender.env.find((e) => e.name === "NIMBUS_FUNCTION_TOKEN").valueFrom.secretKeyRef.name = "other-secret";
    assert.match(policyOf(objects).join("\n"), /Deployment\/nimbus-function-sender: sends other-secret\/token, not the token nimbus-thumbnails checks \(nimbus-function\/token\)/);
    objects = clone(dev).filter((o) => !(o.kind === "Deployment" && o.metadata.name === "nimbus-function-sender"));
    assert.match(policyOf(objects).join("\n"), /RabbitmqSource\/nimbus-image-jobs: its sink Service\/nimbus-function-sender is no sender of this render/);
  });

  test("a function or sender open to more than its one caller", () => {
    const objects = clone(dev);
    find(objects, "NetworkPolicy", "function-sender-from-source").spec.ingress[0].from = [{ namespaceSelector: {} }];
    assert.match(policyOf(objects).join("\n"), /function-sender-from-source: lets more than the event source's adapter reach the sender/);
  });

  test("a Secret with values", () => {
    const objects = [...clone(prod), { apiVersion: "v1", kind: "Secret", metadata: { name: "leak" }, stringData: { k: "v" } }];
    assert.match(policyOf(objects).join("\n"), /Secret\/leak: a Secret with values/);
  });

  test("a schema violation and a kind without a schema", async () => {
    const objects = clone(prod);
    container(objects, "nimbus-api").ports[0].containerPort = "eighty";
    objects.push({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } });
    const source = { apiVersion: "sources.knative.dev/v1alpha1", kind: "RabbitmqSource", metadata: { name: "s" },
      spec: { rabbitmqClusterReference: { name: "r" }, sink: { ref: { kind: "Service", name: "x" } }, delivry: {} } };
    objects.push(source);
    const errors = (await validateSchemas(objects)).join("\n");
    assert.match(errors, /Deployment\/nimbus-api: .*containerPort must be integer/);
    assert.match(errors, /Widget\/w: no schema for example.com\/v1 Widget/);
    assert.match(errors, /RabbitmqSource\/s: \/spec must NOT have additional properties \(delivry\)/);
  });
});

// Issue 22, item 5: each process holds only its own secrets and database role.
describe("each process gets only its own secrets", () => {
  let prod;
  before(() => {
    prod = render("overlays/prod");
  });
  const secretsOf = (c) => [
    ...(c.envFrom ?? []).map((f) => f.secretRef?.name).filter(Boolean),
    ...(c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name).filter(Boolean),
  ];
  const envOf = (c) => Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));

  test("the worker shares no Secret with the API, and is given neither the code nor the gateway secret", () => {
    const worker = container(prod, "nimbus-worker");
    const api = container(prod, "nimbus-api");
    const gateway = container(prod, "nimbus-gateway");
    assert.deepEqual(secretsOf(worker).filter((s) => secretsOf(api).includes(s) || secretsOf(gateway).includes(s)), []);
    assert.ok(!(worker.env ?? []).some((e) => ["NIMBUS_GATEWAY_SECRET", "NIMBUS_AUTH_CODE_SECRET"].includes(e.name)));
    const pod = find(prod, "Deployment", "nimbus-worker").spec.template.spec;
    assert.ok(!(pod.volumes ?? []).some((v) => v.secret?.secretName === "nimbus-jwt"), "the worker mounts the signing keys");
  });

  test("the schema is migrated by a step of its own, with a Secret no serving container holds", () => {
    const pod = find(prod, "Deployment", "nimbus-api").spec.template.spec;
    const migrate = (pod.initContainers ?? []).find((c) => envOf(c).NIMBUS_MIGRATIONS === "only");
    assert.ok(migrate, "no init container runs the migrations");
    const serving = ["nimbus-api", "nimbus-worker", "nimbus-gateway"].flatMap((d) => secretsOf(container(prod, d)));
    assert.deepEqual(secretsOf(migrate).filter((s) => serving.includes(s)), []);
  });

  test("the checks refuse a worker given the API's Secret, a server that migrates, and open egress", () => {
    const objects = clone(prod);
    const worker = container(objects, "nimbus-worker");
    worker.envFrom.push({ secretRef: { name: secretsOf(container(objects, "nimbus-api"))[0] } });
    container(objects, "nimbus-api").env.push({ name: "NIMBUS_MIGRATIONS", value: "apply" });
    const egress = objects.filter((o) => o.kind === "NetworkPolicy" && o.metadata.name === "worker-egress");
    assert.equal(egress.length, 1, "no worker-egress NetworkPolicy");
    egress[0].spec.egress.push({});
    const errors = checkPolicy(objects, ctx).join("\n");
    assert.match(errors, /Secret\/\S+ is given to both the api and the worker/);
    assert.match(errors, /Deployment\/nimbus-api container api: changes the schema itself \(NIMBUS_MIGRATIONS=apply\)/);
    assert.match(errors, /NetworkPolicy\/worker-egress: lets the worker reach any port/);
  });
});

// Issue 22, item 11: whom the gateway believes X-Forwarded-For from is each cluster's own.
describe("the gateway's trusted proxies", () => {
  const trusted = (objects) =>
    container(objects, "nimbus-gateway").env.find((e) => e.name === "NIMBUS_GATEWAY_TRUSTED_PROXIES")?.value;

  test("the base trusts no one", () => {
    assert.equal(trusted(render("base")), "");
  });

  for (const overlay of ["dev", "prod"]) {
    test(`${overlay} names its own range, no wider than a /16`, () => {
      const ranges = (trusted(render(`overlays/${overlay}`)) ?? "").split(/\s+/).filter(Boolean);
      assert.ok(ranges.length > 0, `${overlay} trusts no proxy: the Ingress controller's clients all look alike`);
      for (const cidr of ranges) {
        const [address, bits] = cidr.split("/");
        assert.match(address, /^[0-9a-fA-F.:]+$/, cidr);
        assert.ok(Number(bits) >= (address.includes(":") ? 48 : 16), `${cidr} is wider than the pod network needs`);
      }
    });
  }
});
