// Nimbus's own rules for its rendered manifests, beyond what a schema can say. Each
// check returns messages "Kind/name: what is wrong"; none means the render passes.
//
//   containers      every container has readiness and liveness probes, CPU and memory
//                   requests and limits, runs as non-root without privilege escalation,
//                   with a read-only root file system and every capability dropped
//   rollouts        the app's Deployments roll with maxUnavailable 0, spread over
//                   nodes/zones and have a PodDisruptionBudget
//   autoscalers     every HPA and ScaledObject targets a Deployment of the render, no
//                   Deployment has two autoscalers, scale-down is stabilised
//   shutdown        pods behind the gateway sleep in preStop longer than the gateway's
//                   upstream keep-alive; terminationGracePeriodSeconds covers preStop +
//                   drain delay + shutdown timeout (+ the worker's drain); liveness gives
//                   the event-loop watchdog time to act first
//   ops             the API's metrics listener is a container port, reachable, and the
//                   ServiceMonitor's port leads to it
//   gateway secret  the gateway sends the secret the API instances are given
//   process secrets no Secret is given to two kinds of process (api, worker, gateway,
//                   migrate); no serving container changes the schema (NIMBUS_MIGRATIONS
//                   wait; only the migration step has `only`); the workers' egress is
//                   limited to their dependencies' ports
//   secrets         no Secret with values in the repository
//   services        every Service selects pods of the render
//   network         a default deny exists; the API's port admits only the gateway
//   function        the thumbnail function checks a token from a Secret; no event source
//                   posts to it directly (it cannot send the token): a sender in front
//                   sends the function's own token and admits only the source's adapter
import { describe } from "./schema.mjs";

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job"]);

// Pod templates of workloads, Knative Services included.
export function podTemplates(objects) {
  const out = [];
  for (const o of objects) {
    if (WORKLOADS.has(o.kind) && o.spec?.template) out.push({ owner: o, template: o.spec.template });
    if (o.kind === "Service" && o.apiVersion?.startsWith("serving.knative.dev/") && o.spec?.template) {
      out.push({ owner: o, template: o.spec.template, knative: true });
    }
  }
  return out;
}

const matches = (selector, labels) =>
  !!selector &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

const labelSelectorMatches = (sel, labels) => {
  if (!sel) return false;
  if (!matches(sel.matchLabels ?? {}, labels)) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = labels && Object.hasOwn(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
};

// "1500ms", "3s", "2m" -> seconds.
export function seconds(text) {
  if (text === undefined || text === null) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return { ms: n / 1000, s: n, m: n * 60, h: n * 3600, undefined: n }[m[2]];
}

// A container's environment as it would be at run time: envFrom ConfigMaps of the
// render, then env values (secrets are not resolved: they are not in the repo).
export function environment(container, objects) {
  const env = {};
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name;
    if (!name) continue;
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata?.name === name);
    Object.assign(env, cm?.data ?? {});
  }
  for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  return env;
}

const allContainers = (spec) => [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])];

export function checkContainers(objects) {
  const errors = [];
  for (const { owner, template } of podTemplates(objects)) {
    const pod = template.spec ?? {};
    const podSc = pod.securityContext ?? {};
    for (const c of allContainers(pod)) {
      const where = `${describe(owner)} container ${c.name}`;
      const init = (pod.initContainers ?? []).includes(c);
      if (!init && !c.readinessProbe) errors.push(`${where}: no readinessProbe`);
      if (!init && !c.livenessProbe) errors.push(`${where}: no livenessProbe`);
      for (const kind of ["requests", "limits"]) {
        for (const r of ["cpu", "memory"]) {
          if (c.resources?.[kind]?.[r] === undefined) errors.push(`${where}: no ${r} in resources.${kind}`);
        }
      }
      const sc = c.securityContext ?? {};
      const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
      const user = sc.runAsUser ?? podSc.runAsUser;
      if (nonRoot !== true) errors.push(`${where}: runAsNonRoot is not true`);
      if (user === 0) errors.push(`${where}: runs as user 0`);
      if (sc.readOnlyRootFilesystem !== true) errors.push(`${where}: root file system is not read-only`);
      if (sc.allowPrivilegeEscalation !== false) errors.push(`${where}: allowPrivilegeEscalation is not false`);
      if (sc.privileged === true) errors.push(`${where}: privileged`);
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) errors.push(`${where}: capabilities are not all dropped`);
    }
  }
  return errors;
}

const isApp = (o) => o.metadata?.labels?.["app.kubernetes.io/part-of"] === "nimbus";

export function checkRollouts(objects) {
  const errors = [];
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
  for (const d of objects.filter((o) => o.kind === "Deployment" && isApp(o))) {
    const labels = d.spec?.template?.metadata?.labels;
    const ru = d.spec?.strategy?.rollingUpdate;
    if (d.spec?.strategy?.type === "Recreate" || !ru || !["0", "0%", 0].includes(ru.maxUnavailable)) {
      errors.push(`${describe(d)}: rolling update without maxUnavailable 0`);
    }
    if (!(d.spec?.template?.spec?.topologySpreadConstraints ?? []).length) {
      errors.push(`${describe(d)}: no topologySpreadConstraints`);
    }
    if (!pdbs.some((p) => labelSelectorMatches(p.spec?.selector, labels))) {
      errors.push(`${describe(d)}: no PodDisruptionBudget selects its pods`);
    }
  }
  return errors;
}

export function checkAutoscalers(objects) {
  const errors = [];
  const deployments = new Set(objects.filter((o) => o.kind === "Deployment").map((o) => o.metadata.name));
  const targeted = new Map();
  const target = (owner, ref) => {
    const kind = ref?.kind ?? "Deployment";
    if (kind !== "Deployment" || !deployments.has(ref?.name)) {
      errors.push(`${describe(owner)}: targets ${kind}/${ref?.name}, which is not a Deployment of this render`);
      return;
    }
    if (targeted.has(ref.name)) errors.push(`${describe(owner)}: Deployment/${ref.name} is also scaled by ${targeted.get(ref.name)}`);
    targeted.set(ref.name, describe(owner));
  };
  for (const h of objects.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
    target(h, h.spec?.scaleTargetRef);
    if (!((h.spec?.behavior?.scaleDown?.stabilizationWindowSeconds ?? 0) >= 60)) {
      errors.push(`${describe(h)}: scale-down not stabilised (behavior.scaleDown.stabilizationWindowSeconds < 60)`);
    }
    if ((h.spec?.minReplicas ?? 1) > h.spec?.maxReplicas) errors.push(`${describe(h)}: minReplicas > maxReplicas`);
  }
  for (const s of objects.filter((o) => o.kind === "ScaledObject")) {
    target(s, s.spec?.scaleTargetRef);
    if ((s.spec?.minReplicaCount ?? 0) > (s.spec?.maxReplicaCount ?? 100)) errors.push(`${describe(s)}: minReplicaCount > maxReplicaCount`);
    if (!(s.spec?.triggers ?? []).length) errors.push(`${describe(s)}: no triggers`);
  }
  return errors;
}

// Services the gateway proxies to: host names in its NIMBUS_GATEWAY_UPSTREAMS.
function gatewayUpstreamServices(objects) {
  const names = new Set();
  for (const { template } of podTemplates(objects)) {
    for (const c of template.spec?.containers ?? []) {
      const up = environment(c, objects).NIMBUS_GATEWAY_UPSTREAMS;
      for (const server of (up ?? "").split(/\s+/).filter(Boolean)) names.add(server.split(":")[0].split(".")[0]);
    }
  }
  return names;
}

const coreServices = (objects) => objects.filter((o) => o.kind === "Service" && o.apiVersion === "v1");

function preStopSleep(container) {
  const cmd = container.lifecycle?.preStop?.exec?.command ?? [];
  if (cmd.length === 2 && /(^|\/)sleep$/.test(cmd[0])) return Number(cmd[1]);
  const sleep = container.lifecycle?.preStop?.sleep?.seconds;
  return sleep === undefined ? 0 : Number(sleep);
}

export function checkShutdown(objects, { gatewayKeepAliveSeconds }) {
  const errors = [];
  const upstreams = gatewayUpstreamServices(objects);
  const behindGateway = (labels) =>
    coreServices(objects).some((s) => upstreams.has(s.metadata.name) && matches(s.spec?.selector, labels));
  for (const { owner, template, knative } of podTemplates(objects)) {
    const pod = template.spec ?? {};
    for (const c of pod.containers ?? []) {
      const env = environment(c, objects);
      if (env.NIMBUS_DRAIN_DELAY === undefined && env.NIMBUS_WORKER_MODE === undefined) continue;  // not a Nimbus process
      const where = `${describe(owner)} container ${c.name}`;
      const sleep = preStopSleep(c);
      if (behindGateway(template.metadata?.labels) && !(sleep > gatewayKeepAliveSeconds)) {
        errors.push(`${where}: preStop sleep ${sleep} s is not longer than the gateway's upstream keep-alive (${gatewayKeepAliveSeconds} s)`);
      }
      const drain = seconds(env.NIMBUS_DRAIN_DELAY ?? "2s");
      const shutdown = seconds(env.NIMBUS_SHUTDOWN_TIMEOUT ?? "15s");
      const workerDrain = env.NIMBUS_WORKER_MODE === "queue" ? seconds(env.NIMBUS_WORKER_DRAIN_TIMEOUT ?? "20s") + 3 : 0;
      const needed = sleep + drain + shutdown + workerDrain;
      // Knative gives a revision's pods its own timeoutSeconds as the grace period.
      const grace = knative ? pod.timeoutSeconds ?? 300 : pod.terminationGracePeriodSeconds ?? 30;
      if ([drain, shutdown, workerDrain].some(Number.isNaN)) errors.push(`${where}: a drain setting is not a duration`);
      else if (!(grace > needed)) {
        errors.push(`${where}: grace period ${grace} s does not cover preStop ${sleep} + drain ${drain} + shutdown ${shutdown}${workerDrain ? ` + worker drain ${workerDrain}` : ""} = ${needed} s`);
      }
      const watchdog = seconds(env.NIMBUS_WATCHDOG_TIMEOUT ?? "5s");
      const live = c.livenessProbe;
      if (live && watchdog > 0) {
        const window = (live.periodSeconds ?? 10) * (live.failureThreshold ?? 3);
        if (!(window > watchdog)) errors.push(`${where}: liveness gives up after ${window} s, before the ${watchdog} s watchdog`);
      }
    }
  }
  return errors;
}

function containerPort(container, ref) {
  return (container.ports ?? []).find((p) => p.name === ref || p.containerPort === Number(ref))?.containerPort;
}

export function checkOps(objects) {
  const errors = [];
  const monitors = objects.filter((o) => o.kind === "ServiceMonitor");
  for (const { owner, template } of podTemplates(objects)) {
    for (const c of template.spec?.containers ?? []) {
      const env = environment(c, objects);
      if (env.NIMBUS_OPS_PORT === undefined) continue;
      const where = `${describe(owner)} container ${c.name}`;
      const port = Number(env.NIMBUS_OPS_PORT);
      if (!(c.ports ?? []).some((p) => p.containerPort === port)) errors.push(`${where}: NIMBUS_OPS_PORT ${port} is not a container port`);
      if (env.NIMBUS_OPS_ADDRESS !== "0.0.0.0") errors.push(`${where}: NIMBUS_OPS_ADDRESS is not 0.0.0.0: the scraper cannot reach the metrics`);
      const scraped = monitors.some((m) =>
        coreServices(objects)
          .filter((s) => labelSelectorMatches(m.spec?.selector, s.metadata?.labels) && matches(s.spec?.selector, template.metadata?.labels))
          .some((s) =>
            (m.spec?.endpoints ?? []).some((e) => {
              const sp = (s.spec?.ports ?? []).find((p) => p.name === e.port);
              return sp && containerPort(c, sp.targetPort ?? sp.port) === port;
            }),
          ),
      );
      if (!scraped) errors.push(`${where}: no ServiceMonitor scrapes its metrics port ${port}`);
    }
  }
  return errors;
}

// Where a container's NIMBUS_GATEWAY_SECRET comes from: "secret/key" names.
function gatewaySecretSources(container) {
  const out = [];
  for (const e of container.env ?? []) {
    if (e.name === "NIMBUS_GATEWAY_SECRET" && e.valueFrom?.secretKeyRef) {
      out.push(`${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
    }
  }
  for (const f of container.envFrom ?? []) if (f.secretRef?.name) out.push(`${f.secretRef.name}/${f.prefix ?? ""}NIMBUS_GATEWAY_SECRET`);
  return out;
}

export function checkGatewaySecret(objects) {
  const errors = [];
  const gateways = [];
  const apis = [];
  for (const { owner, template } of podTemplates(objects)) {
    for (const c of template.spec?.containers ?? []) {
      const env = environment(c, objects);
      if (env.NIMBUS_GATEWAY_UPSTREAMS !== undefined) gateways.push({ owner, c });
      else if (env.NIMBUS_OPS_PORT !== undefined) apis.push({ owner, c });
    }
  }
  for (const g of gateways) {
    const sent = gatewaySecretSources(g.c);
    if (!sent.length) errors.push(`${describe(g.owner)}: the gateway is given no NIMBUS_GATEWAY_SECRET`);
    for (const a of apis) {
      if (!gatewaySecretSources(a.c).some((s) => sent.includes(s))) {
        errors.push(`${describe(a.owner)}: its NIMBUS_GATEWAY_SECRET is not the one the gateway sends (${sent.join(", ") || "none"})`);
      }
    }
  }
  return errors;
}

// What kind of Nimbus process a container is, from its settings.
function processKind(container, objects) {
  const env = environment(container, objects);
  if (env.NIMBUS_MIGRATIONS === "only") return "migrate";
  if (env.NIMBUS_GATEWAY_UPSTREAMS !== undefined) return "gateway";
  if (env.NIMBUS_WORKER_MODE !== undefined) return "worker";
  if (env.NIMBUS_OPS_PORT !== undefined) return "api";
  return undefined;
}

const secretNames = (c) => [
  ...(c.envFrom ?? []).map((f) => f.secretRef?.name),
  ...(c.env ?? []).map((e) => e.valueFrom?.secretKeyRef?.name),
].filter(Boolean);

// Each process holds only its own secrets (docs/adr/0011). A Secret given whole
// (envFrom) belongs to one kind of process; the gateway secret is the one named key
// shared by the gateway and the API.
export function checkProcessSecrets(objects) {
  const errors = [];
  const users = new Map();  // Secret name -> kinds given it whole
  for (const { owner, template } of podTemplates(objects)) {
    for (const c of allContainers(template.spec)) {
      const kind = processKind(c, objects);
      if (!kind) continue;
      for (const f of c.envFrom ?? []) {
        if (!f.secretRef?.name) continue;
        if (!users.has(f.secretRef.name)) users.set(f.secretRef.name, new Set());
        users.get(f.secretRef.name).add(kind);
      }
      const migrations = environment(c, objects).NIMBUS_MIGRATIONS ?? "apply";
      if ((kind === "api" || kind === "worker") && migrations !== "wait") {
        errors.push(`${describe(owner)} container ${c.name}: changes the schema itself (NIMBUS_MIGRATIONS=${migrations})`);
      }
      if (kind === "worker" && (c.env ?? []).some((e) => ["NIMBUS_GATEWAY_SECRET", "NIMBUS_AUTH_CODE_SECRET"].includes(e.name))) {
        errors.push(`${describe(owner)} container ${c.name}: a worker given the API's secrets`);
      }
    }
    if (allContainers(template.spec).some((c) => processKind(c, objects) === "worker") &&
        (template.spec?.volumes ?? []).some((v) => v.secret?.secretName === "nimbus-jwt")) {
      errors.push(`${describe(owner)}: a worker mounts the token signing keys`);
    }
  }
  for (const [name, kinds] of users) {
    if (kinds.size > 1) errors.push(`Secret/${name} is given to both the ${[...kinds].sort().join(" and the ")}`);
  }
  for (const { owner, template, knative } of podTemplates(objects)) {
    // (the Knative function's egress is its platform's: queue-proxy, activator)
    if (knative || !(template.spec?.containers ?? []).some((c) => processKind(c, objects) === "worker")) continue;
    const egress = objects.filter((o) => o.kind === "NetworkPolicy" && (o.spec?.policyTypes ?? []).includes("Egress") &&
      labelSelectorMatches(o.spec?.podSelector, template.metadata?.labels));
    if (!egress.length) errors.push(`${describe(owner)}: the worker's egress is not limited (no NetworkPolicy)`);
    for (const p of egress) {
      if ((p.spec?.egress ?? []).some((rule) => !(rule.ports ?? []).length)) {
        errors.push(`${describe(p)}: lets the worker reach any port`);
      }
    }
  }
  return errors;
}

export function checkSecrets(objects) {
  return objects
    .filter((o) => o.kind === "Secret" && (Object.keys(o.data ?? {}).length || Object.keys(o.stringData ?? {}).length))
    .map((o) => `${describe(o)}: a Secret with values in the repository (reference one made outside it)`);
}

export function checkServices(objects) {
  const templates = podTemplates(objects);
  return coreServices(objects)
    .filter((s) => s.spec?.type !== "ExternalName")
    .filter((s) => !s.spec?.selector || !templates.some(({ template }) => matches(s.spec.selector, template.metadata?.labels)))
    .map((s) => `${describe(s)}: selects no pod of this render`);
}

export function checkNetwork(objects) {
  const errors = [];
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const denyAll = policies.some(
    (p) => Object.keys(p.spec?.podSelector ?? {}).length === 0 && (p.spec?.policyTypes ?? []).includes("Ingress") && !(p.spec?.ingress ?? []).length,
  );
  if (!denyAll) errors.push("NetworkPolicy: no default deny of ingress");
  const gatewayLabels = podTemplates(objects).find(({ template }) =>
    (template.spec?.containers ?? []).some((c) => environment(c, objects).NIMBUS_GATEWAY_UPSTREAMS !== undefined),
  )?.template.metadata?.labels;
  for (const { owner, template } of podTemplates(objects)) {
    const api = (template.spec?.containers ?? []).find((c) => environment(c, objects).NIMBUS_OPS_PORT !== undefined);
    if (!api) continue;
    const httpPort = containerPort(api, "http");
    for (const p of policies.filter((p) => labelSelectorMatches(p.spec?.podSelector, template.metadata?.labels))) {
      for (const rule of p.spec?.ingress ?? []) {
        const ports = rule.ports ?? [];
        const opensHttp = !ports.length || ports.some((x) => x.port === "http" || x.port === httpPort);
        if (!opensHttp) continue;
        const onlyGateway = (rule.from ?? []).length > 0 && rule.from.every((f) => !f.namespaceSelector && !f.ipBlock && labelSelectorMatches(f.podSelector, gatewayLabels));
        if (!onlyGateway) errors.push(`${describe(p)}: lets more than the gateway reach ${describe(owner)}'s API port`);
      }
    }
  }
  return errors;
}

// "secret/key" of a container's NIMBUS_FUNCTION_TOKEN (only a secretKeyRef counts).
function functionTokenSource(container) {
  const ref = (container.env ?? []).find((e) => e.name === "NIMBUS_FUNCTION_TOKEN")?.valueFrom?.secretKeyRef;
  return ref ? `${ref.name}/${ref.key}` : undefined;
}

export function checkFunction(objects) {
  const errors = [];
  const functions = new Map(); // Knative Service name -> token source
  const senders = new Map(); // core Service name -> { owner, target, token }
  for (const { owner, template, knative } of podTemplates(objects)) {
    for (const c of template.spec?.containers ?? []) {
      const env = environment(c, objects);
      if (knative && env.NIMBUS_WORKER_MODE === "function") {
        const token = functionTokenSource(c);
        if (!token) errors.push(`${describe(owner)}: function mode without NIMBUS_FUNCTION_TOKEN from a Secret`);
        functions.set(owner.metadata.name, token);
      }
      if (env.NIMBUS_SENDER_TARGET !== undefined) {
        for (const s of coreServices(objects).filter((s) => matches(s.spec?.selector, template.metadata?.labels))) {
          senders.set(s.metadata.name, { owner, target: env.NIMBUS_SENDER_TARGET, token: functionTokenSource(c), labels: template.metadata?.labels });
        }
      }
    }
  }
  for (const source of objects.filter((o) => o.kind === "RabbitmqSource")) {
    const ref = source.spec?.sink?.ref ?? {};
    if (ref.apiVersion?.startsWith("serving.knative.dev/") && functions.has(ref.name)) {
      errors.push(`${describe(source)}: posts to the function ${ref.name} directly, without its token (sink it to the sender)`);
    } else if (ref.kind === "Service" && ref.apiVersion === "v1" && !senders.has(ref.name)) {
      errors.push(`${describe(source)}: its sink Service/${ref.name} is no sender of this render`);
    }
  }
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const seen = new Set();
  for (const { owner, target, token, labels } of senders.values()) {
    if (seen.has(owner)) continue;
    seen.add(owner);
    if (!functions.has(target)) errors.push(`${describe(owner)}: sends to ${target}, which is no function of this render`);
    else if (token !== functions.get(target)) {
      errors.push(`${describe(owner)}: sends ${token ?? "no token"}, not the token ${target} checks (${functions.get(target) ?? "none"})`);
    }
    for (const p of policies.filter((p) => labelSelectorMatches(p.spec?.podSelector, labels))) {
      for (const rule of p.spec?.ingress ?? []) {
        const onlySource = (rule.from ?? []).length > 0 &&
          rule.from.every((f) => !f.namespaceSelector && !f.ipBlock && (f.podSelector?.matchExpressions ?? []).some((e) => e.key === "eventing.knative.dev/source"));
        if (!onlySource) errors.push(`${describe(p)}: lets more than the event source's adapter reach the sender`);
      }
    }
  }
  return errors;
}

export function checkPolicy(objects, context) {
  return [
    ...checkContainers(objects),
    ...checkRollouts(objects),
    ...checkAutoscalers(objects),
    ...checkShutdown(objects, context),
    ...checkOps(objects),
    ...checkGatewaySecret(objects),
    ...checkProcessSecrets(objects),
    ...checkSecrets(objects),
    ...checkServices(objects),
    ...checkNetwork(objects),
    ...checkFunction(objects),
  ];
}
