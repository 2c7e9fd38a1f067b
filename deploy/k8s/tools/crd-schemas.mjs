// JSON Schemas of the custom resources that no npm models package covers, transcribed
// from their CRDs (the fields, types and required lists of the versions named below).
// Only the fields Nimbus's manifests use are listed, and every other field is refused:
// a misspelt field fails here instead of being dropped by the API server.
//
//   RabbitmqSource   sources.knative.dev/v1alpha1  knative-extensions/eventing-rabbitmq 1.1x
//   Cluster          postgresql.cnpg.io/v1          CloudNativePG 1.2x
//   RabbitmqCluster  rabbitmq.com/v1beta1           RabbitMQ Cluster Operator 2.x
const str = { type: "string" };
const int = { type: "integer" };
const bool = { type: "boolean" };
const quantity = { anyOf: [{ type: "string" }, { type: "integer" }] };
const obj = (properties, required = []) => ({ type: "object", properties, required, additionalProperties: false });
const map = { type: "object", additionalProperties: { type: "string" } };
const resources = obj({ requests: { type: "object", additionalProperties: quantity }, limits: { type: "object", additionalProperties: quantity } });
const metadata = { type: "object", properties: { name: str, namespace: str, labels: map, annotations: map }, required: ["name"] };
const resource = (apiVersion, kind, spec) =>
  obj({ apiVersion: { const: apiVersion }, kind: { const: kind }, metadata, spec }, ["apiVersion", "kind", "metadata", "spec"]);

const destination = obj({
  ref: obj({ apiVersion: str, kind: str, name: str, namespace: str }, ["kind", "name"]),
  uri: str,
});

export const crdSchemas = {
  "sources.knative.dev/v1alpha1/RabbitmqSource": resource(
    "sources.knative.dev/v1alpha1",
    "RabbitmqSource",
    obj(
      {
        rabbitmqClusterReference: obj({ name: str, namespace: str, connectionSecret: obj({ name: str }, ["name"]) }),
        rabbitmqResourcesConfig: obj({
          predeclared: bool,
          exchangeName: str,
          queueName: str,
          parallelism: { type: "integer", minimum: 1, maximum: 1000 },
          vhost: str,
        }),
        delivery: obj({
          retry: int,
          backoffPolicy: { enum: ["linear", "exponential"] },
          backoffDelay: { type: "string", pattern: "^P" },
          deadLetterSink: destination,
          timeout: str,
        }),
        sink: destination,
        serviceAccountName: str,
      },
      ["rabbitmqClusterReference", "sink"],
    ),
  ),
  "postgresql.cnpg.io/v1/Cluster": resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    obj(
      {
        instances: { type: "integer", minimum: 1 },
        imageName: str,
        minSyncReplicas: int,
        maxSyncReplicas: int,
        inheritedMetadata: obj({ labels: map, annotations: map }),
        bootstrap: obj({ initdb: obj({ database: str, owner: str, secret: obj({ name: str }, ["name"]) }) }),
        postgresql: obj({ parameters: map }),
        storage: obj({ size: str, storageClass: str }),
        resources,
      },
      ["instances"],
    ),
  ),
  "rabbitmq.com/v1beta1/RabbitmqCluster": resource(
    "rabbitmq.com/v1beta1",
    "RabbitmqCluster",
    obj({
      replicas: { type: "integer", minimum: 1 },
      image: str,
      override: { type: "object" },
      rabbitmq: obj({ additionalConfig: str, additionalPlugins: { type: "array", items: str } }),
      resources,
      persistence: obj({ storage: str, storageClassName: str }),
    }),
  ),
};
