// Validates rendered objects against their schemas: Kubernetes (kubernetes-models),
// KEDA, Knative and prometheus-operator (@kubernetes-models/*), and the transcribed
// CRD schemas of crd-schemas.mjs. An object of a kind without a schema is an error.
import Ajv from "ajv";
import { crdSchemas } from "./crd-schemas.mjs";

const ajv = new Ajv({ allErrors: true, strict: false });
const crdValidators = Object.fromEntries(Object.entries(crdSchemas).map(([k, s]) => [k, ajv.compile(s)]));

function modelModule(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "") return `kubernetes-models/${version}`;
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}`;
  if (group.endsWith("knative.dev")) return `@kubernetes-models/knative/${group}/${version}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/${group}/${version}`;
  if (!group.includes(".") || group.endsWith(".k8s.io")) return `kubernetes-models/${group}/${version}`;
  return null;
}

export const describe = (o) => `${o?.kind ?? "?"}/${o?.metadata?.name ?? "?"}`;

// Errors as strings ("Kind/name: message"); empty when every object is valid.
export async function validateSchemas(objects) {
  const errors = [];
  for (const o of objects) {
    if (!o || typeof o !== "object" || !o.apiVersion || !o.kind) {
      errors.push(`${describe(o)}: not a Kubernetes object (apiVersion and kind are required)`);
      continue;
    }
    const crd = crdValidators[`${o.apiVersion}/${o.kind}`];
    if (crd) {
      if (!crd(o)) {
        for (const e of crd.errors) errors.push(`${describe(o)}: ${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
      }
      continue;
    }
    const module = modelModule(o.apiVersion);
    let Model;
    try {
      Model = module && (await import(module))[o.kind];
    } catch {
      Model = undefined;
    }
    if (typeof Model !== "function") {
      errors.push(`${describe(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      errors.push(`${describe(o)}: ${e.message}`);
    }
  }
  return errors;
}
