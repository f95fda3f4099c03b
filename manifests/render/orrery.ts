import { createHash } from 'node:crypto';
import type { V1Container, V1PodSpec, V1PolicyRule } from '@kubernetes/client-node';
import type { Values } from '../values.ts';
import { checksum, claimTemplate, httpProbe, labels, resources, restrictedContainer, type ClusterRole, type ClusterRoleBinding, type ConfigMap, type Deployment, type HorizontalPodAutoscaler, type Ingress, type K8sObject, type Manifest, type PodDisruptionBudget, type Service, type ServiceAccount, type StatefulSet } from './k8s.ts';
import { imagePolicies, orreryImage, orreryPolicy, type OrreryService } from './policies.ts';
import { renderPrometheusDiscovery } from './prometheus.ts';
import { markImage, toYaml } from './yaml.ts';

/**
 * Orrery's own services in their namespace: ingest (Deployment, Service, HPA, PDB,
 * Ingress), router and sinks, the GitOps controller with its RBAC, Kafka (a single-node
 * KRaft StatefulSet unless external brokers are given), and the config. Each Orrery image
 * is marked for its own policy (`orrery-ingest`, …). The image's entrypoint is the
 * `orrery` CLI, so a container's args are `start <component>`.
 */

const PORT = 8080;
const DATA_DIR = '/var/lib/orrery';
const CONFIG_PATH = '/etc/orrery/orrery.yaml';

/**
 * Env of the built-in single-node KRaft Kafka (broker and controller in one process) for
 * the compose and Marathon targets, advertised at `advertised` (`host:port`).
 */
export function singleNodeKafkaEnv(advertised: string): Record<string, string> {
  return {
    KAFKA_NODE_ID: '1',
    KAFKA_PROCESS_ROLES: 'broker,controller',
    KAFKA_LISTENERS: 'PLAINTEXT://:9092,CONTROLLER://:9093',
    KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://${advertised}`,
    KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
    KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
    KAFKA_LOG_DIRS: '/var/lib/kafka/data/logs',
  };
}

/** The brokers Orrery uses: the external ones, or the built-in Kafka's pod. */
export function kafkaBrokers(v: Values): string[] {
  return v.kafka.brokers ?? [`kafka-0.kafka.${v.orrery.namespace}.svc:9092`];
}

/**
 * Orrery's config file: the values' `orrery.config`, with the brokers and, when GitOps is
 * configured, the image policies the manifests are marked for (a policy named in the
 * values' own `gitops.policies` wins over the generated one of that name).
 */
export function orreryConfig(v: Values): Record<string, unknown> {
  const cfg = structuredClone(v.orrery.config) as Record<string, Record<string, unknown> | undefined>;
  const out: Record<string, unknown> = { ...cfg, kafka: { ...cfg.kafka, brokers: kafkaBrokers(v) } };
  const gitops = cfg.gitops;
  if (gitops) {
    const repo = (gitops.repo ?? {}) as { path?: string; valuesFiles?: string[] };
    const own = (gitops.policies ?? []) as Array<{ name: string }>;
    const byName = new Map(own.map((p) => [p.name, p]));
    const generated = imagePolicies(v, repo.path ?? '.');
    const names = new Set(generated.map((p) => p.name));
    // The values file usually sits beside the rendered folder, outside repo.path, where
    // the controller edits nothing unless told: the policies' `:tag` markers there need it.
    const valuesFiles = [...new Set([...(repo.valuesFiles ?? []), ...(v.valuesFile ? [v.valuesFile] : [])])];
    out.gitops = {
      ...gitops,
      ...(gitops.repo && valuesFiles.length > 0 ? { repo: { ...gitops.repo, valuesFiles } } : {}),
      policies: [...generated.map((p) => byName.get(p.name) ?? p), ...own.filter((p) => !names.has(p.name))],
    };
  }
  return out;
}

function orreryContainer(v: Values, s: OrreryService, extra: Partial<V1Container> = {}): V1Container {
  return markImage(
    {
      name: s,
      image: orreryImage(v, s),
      args: ['start', s],
      env: [
        { name: 'ORRERY_CONFIG', value: CONFIG_PATH },
        { name: 'ORRERY_DATA_DIR', value: DATA_DIR },
        { name: 'PORT', value: String(PORT) },
      ],
      // DATABASE_URL, REDIS_URL and the ${VAR}s of the config file (GIT_TOKEN, …).
      envFrom: [{ secretRef: { name: v.orrery.credentialsSecret } }],
      ports: [{ name: 'http', containerPort: PORT }],
      livenessProbe: httpProbe('/healthz', 'http', { periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 5 }),
      // 200 also while `degraded` (ingest spooling): a spooling pod still takes events durably.
      readinessProbe: httpProbe('/readyz', 'http', { periodSeconds: 5, timeoutSeconds: 5, failureThreshold: 3 }),
      securityContext: { ...restrictedContainer, readOnlyRootFilesystem: true },
      volumeMounts: [
        { name: 'config', mountPath: '/etc/orrery', readOnly: true },
        { name: 'data', mountPath: DATA_DIR },
      ],
      ...extra,
    },
    orreryPolicy(s),
  );
}

function orreryDeployment(v: Values, s: OrreryService, replicas: number | undefined, spec: Partial<V1PodSpec> & { containers: V1Container[] }, configSum: string, extra: Partial<NonNullable<Deployment['spec']>> = {}): Deployment {
  const ns = v.orrery.namespace;
  const l = labels('orrery', 'orrery', s);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: s, namespace: ns, labels: l.all },
    spec: {
      ...(replicas === undefined ? {} : { replicas }),
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all, annotations: { 'checksum/orrery-config': configSum } },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true },
          volumes: [
            { name: 'config', configMap: { name: 'orrery-config' } },
            { name: 'data', emptyDir: {} },
          ],
          ...spec,
        },
      },
      ...extra,
    },
  };
}

function ingress(v: Values, name: string, ing: NonNullable<Values['orrery']['ingest']['ingress']>, l: ReturnType<typeof labels>): Ingress {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name, namespace: v.orrery.namespace, labels: l.all, ...(Object.keys(ing.annotations).length > 0 ? { annotations: ing.annotations } : {}) },
    spec: {
      ...(ing.className ? { ingressClassName: ing.className } : {}),
      ...(ing.tlsSecret ? { tls: [{ hosts: [ing.host], secretName: ing.tlsSecret }] } : {}),
      rules: [{ host: ing.host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name, port: { name: 'http' } } } }] } }],
    },
  };
}

function httpService(v: Values, name: string, l: ReturnType<typeof labels>): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: v.orrery.namespace, labels: l.all },
    spec: { selector: l.selector, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  };
}

/** Orrery's namespace, except the GitOps controller's ClusterRole (see {@link renderGitopsRbac}). */
export function renderOrrery(v: Values): Manifest[] {
  const ns = v.orrery.namespace;
  const o = v.orrery;
  const m = (component: string, objects: K8sObject[]): Manifest => ({ namespace: ns, component, objects });
  const configText = toYaml(orreryConfig(v));
  const configSum = checksum(configText);
  const out: Manifest[] = [];

  out.push(m('namespace', [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/part-of': 'orrery' } } }]));
  const cm: ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'orrery-config', namespace: ns, labels: labels('orrery', 'orrery', 'config').all }, data: { 'orrery.yaml': configText } };
  out.push(m('config', [cm]));

  // ingest: the public edge. The HPA owns the replica count, so the Deployment does not
  // say one: a replicas field in git would be applied back over the HPA's choice at every sync.
  const il = labels('orrery', 'orrery', 'ingest');
  const ingestDep = orreryDeployment(
    v,
    'ingest',
    undefined,
    {
      // The spool (events acknowledged while Kafka was away) lives in an emptyDir: it
      // survives container restarts, not pod deletion, and SIGTERM replays it when Kafka is back.
      volumes: [
        { name: 'config', configMap: { name: 'orrery-config' } },
        { name: 'data', emptyDir: { sizeLimit: o.ingest.spoolSize } },
      ],
      topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: il.selector } }],
      containers: [
        orreryContainer(v, 'ingest', {
          resources: resources(o.ingest.resources),
          // Keep serving while the endpoint removal reaches every load balancer, then drain.
          lifecycle: { preStop: { sleep: { seconds: 5 } } },
        }),
      ],
    },
    configSum,
    { strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } },
  );
  const hpa: HorizontalPodAutoscaler = {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { name: 'ingest', namespace: ns, labels: il.all },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'ingest' },
      minReplicas: o.ingest.autoscaling.minReplicas,
      maxReplicas: o.ingest.autoscaling.maxReplicas,
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: o.ingest.autoscaling.targetCPUUtilizationPercentage } } }],
    },
  };
  const pdb: PodDisruptionBudget = {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: 'ingest', namespace: ns, labels: il.all },
    spec: { minAvailable: o.ingest.minAvailable, selector: { matchLabels: il.selector } },
  };
  const ingestObjs: K8sObject[] = [httpService(v, 'ingest', il), ingestDep, hpa, pdb];
  if (o.ingest.ingress) ingestObjs.push(ingress(v, 'ingest', o.ingest.ingress, il));
  out.push(m('ingest', ingestObjs));

  out.push(m('router', [orreryDeployment(v, 'router', o.router.replicas, { containers: [orreryContainer(v, 'router', { resources: resources(o.router.resources) })] }, configSum)]));
  out.push(m('sinks', [orreryDeployment(v, 'sinks', o.sinks.replicas, { containers: [orreryContainer(v, 'sinks', { resources: resources(o.sinks.resources) })] }, configSum)]));

  if (o.gitops.enabled) {
    const gl = labels('orrery', 'orrery', 'gitops');
    const sa: ServiceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'orrery-gitops', namespace: ns, labels: gl.all } };
    const dep = orreryDeployment(
      v,
      'gitops',
      1,
      { serviceAccountName: 'orrery-gitops', automountServiceAccountToken: true, containers: [orreryContainer(v, 'gitops', { resources: resources(o.gitops.resources) })] },
      configSum,
      // One controller: it serialises the changes to the manifests repository in process,
      // and the deploy log it serves is its own. Recreate never runs two at once.
      { strategy: { type: 'Recreate' } },
    );
    const objs: K8sObject[] = [sa, httpService(v, 'gitops', gl), dep];
    if (o.gitops.ingress) objs.push(ingress(v, 'gitops', o.gitops.ingress, gl));
    out.push(m('gitops', objs));
  }

  if (!v.kafka.brokers) out.push(m('kafka', renderKafka(v)));
  out.push(renderPrometheusDiscovery(v));
  return out;
}

/** Kafka's cluster id, derived from the namespace: stable across renders, and no random. */
export function kafkaClusterId(ns: string): string {
  return createHash('sha256').update(`orrery-kafka:${ns}`).digest().subarray(0, 16).toString('base64url');
}

/** A single-node Kafka in KRaft mode (broker and controller in one process), as the tests run it. */
function renderKafka(v: Values): K8sObject[] {
  const ns = v.orrery.namespace;
  const l = labels('kafka', 'orrery', 'broker');
  const probe = { tcpSocket: { port: 'kafka' }, periodSeconds: 10, timeoutSeconds: 5 };
  const sts: StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'kafka', namespace: ns, labels: l.all },
    spec: {
      serviceName: 'kafka',
      replicas: 1,
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true },
          containers: [
            {
              name: 'kafka',
              image: v.images.kafka,
              env: [
                { name: 'CLUSTER_ID', value: kafkaClusterId(ns) },
                { name: 'KAFKA_NODE_ID', value: '1' },
                { name: 'KAFKA_PROCESS_ROLES', value: 'broker,controller' },
                { name: 'KAFKA_LISTENERS', value: 'PLAINTEXT://:9092,CONTROLLER://:9093' },
                { name: 'KAFKA_ADVERTISED_LISTENERS', value: `PLAINTEXT://${kafkaBrokers(v)[0]}` },
                { name: 'KAFKA_CONTROLLER_LISTENER_NAMES', value: 'CONTROLLER' },
                { name: 'KAFKA_LISTENER_SECURITY_PROTOCOL_MAP', value: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT' },
                { name: 'KAFKA_CONTROLLER_QUORUM_VOTERS', value: '1@localhost:9093' },
                // One broker: internal topics cannot have more replicas than that.
                { name: 'KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', value: '1' },
                { name: 'KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', value: '1' },
                { name: 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR', value: '1' },
                { name: 'KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS', value: '0' },
                // Orrery creates its topics with the partitions it wants (orrery topics create).
                { name: 'KAFKA_AUTO_CREATE_TOPICS_ENABLE', value: 'false' },
                // A subdirectory: the volume's root may hold lost+found, which is not a log dir.
                { name: 'KAFKA_LOG_DIRS', value: '/var/lib/kafka/data/logs' },
              ],
              ports: [
                { name: 'kafka', containerPort: 9092 },
                { name: 'controller', containerPort: 9093 },
              ],
              resources: resources(v.kafka.resources),
              securityContext: restrictedContainer,
              startupProbe: { ...probe, failureThreshold: 30 },
              readinessProbe: probe,
              livenessProbe: { ...probe, failureThreshold: 5 },
              volumeMounts: [{ name: 'data', mountPath: '/var/lib/kafka/data' }],
            },
          ],
        },
      },
      volumeClaimTemplates: [claimTemplate('data', v.kafka.storage, v.kafka.storageClass)],
    },
  };
  const svc: Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kafka', namespace: ns, labels: l.all },
    // Headless: the broker advertises its pod name, so clients must resolve exactly that.
    spec: { clusterIP: 'None', selector: l.selector, ports: [{ name: 'kafka', port: 9092, targetPort: 'kafka' }] },
  };
  return [svc, sts];
}

/** API group and resource of each kind we render, for RBAC rules. */
const RESOURCES: Record<string, { group: string; resource: string }> = {
  Namespace: { group: '', resource: 'namespaces' },
  ConfigMap: { group: '', resource: 'configmaps' },
  Service: { group: '', resource: 'services' },
  ServiceAccount: { group: '', resource: 'serviceaccounts' },
  Deployment: { group: 'apps', resource: 'deployments' },
  StatefulSet: { group: 'apps', resource: 'statefulsets' },
  HorizontalPodAutoscaler: { group: 'autoscaling', resource: 'horizontalpodautoscalers' },
  PodDisruptionBudget: { group: 'policy', resource: 'poddisruptionbudgets' },
  Ingress: { group: 'networking.k8s.io', resource: 'ingresses' },
  Role: { group: 'rbac.authorization.k8s.io', resource: 'roles' },
  RoleBinding: { group: 'rbac.authorization.k8s.io', resource: 'rolebindings' },
};

/** Why the controller holds each verb; rendered as an annotation so a reviewer sees it beside the rules. */
export const GITOPS_VERBS_WHY =
  'get, list, watch: read the live objects to diff them with git and notice drift. ' +
  'create, patch: server-side apply is a PATCH, and applying an object that does not exist yet is also authorised as create. ' +
  'delete: prune what was removed from git (never namespaces: removing a team is a human decision). ' +
  'No update (apply never PUTs), no Secrets (the manifests only name them), no ClusterRoles (its own RBAC is applied by an admin). ' +
  "Role rules are also held, since RBAC only lets it create a Role whose permissions it has. " +
  'pods list, delete (only with StatefulSets): the forced rollback of a reverted StatefulSet deletes the pods stuck unready at the bad revision, which the StatefulSet controller would otherwise wait for forever.';

/**
 * The GitOps controller's least-privilege ClusterRole, derived from what the manifests
 * contain: exactly the kinds rendered, plus the permissions of the Roles it must create.
 * Its own ClusterRole and binding are cluster-admin business: applied once by a human and
 * not by the controller, which therefore needs no `escalate` or `bind`.
 */
export function renderGitopsRbac(v: Values, manifests: readonly Manifest[]): Manifest | undefined {
  if (!v.orrery.gitops.enabled) return undefined;
  const ns = v.orrery.namespace;
  const l = labels('orrery', 'orrery', 'gitops');
  const byGroup = new Map<string, Set<string>>();
  const grants: V1PolicyRule[] = [];
  for (const obj of manifests.flatMap((m) => m.objects)) {
    const r = RESOURCES[obj.kind];
    if (!r) continue; // ClusterRole/ClusterRoleBinding: not the controller's to apply
    if (!byGroup.has(r.group)) byGroup.set(r.group, new Set());
    byGroup.get(r.group)!.add(r.resource);
    if (obj.kind === 'Role') grants.push(...((obj as { rules?: V1PolicyRule[] }).rules ?? []));
  }
  const apply = ['create', 'delete', 'get', 'list', 'patch', 'watch'];
  const rules: V1PolicyRule[] = [...byGroup.keys()].sort().flatMap((group) => {
    const resources = [...byGroup.get(group)!].sort();
    const deletable = resources.filter((r) => r !== 'namespaces');
    const out: V1PolicyRule[] = [];
    if (deletable.length > 0) out.push({ apiGroups: [group], resources: deletable, verbs: apply });
    if (deletable.length < resources.length) out.push({ apiGroups: [group], resources: ['namespaces'], verbs: apply.filter((x) => x !== 'delete') });
    return out;
  });
  if (manifests.some((m) => m.objects.some((o) => o.kind === 'StatefulSet'))) rules.push({ apiGroups: [''], resources: ['pods'], verbs: ['delete', 'list'] });
  const seen = new Set<string>();
  for (const g of grants) {
    const key = JSON.stringify(g);
    if (!seen.has(key)) rules.push(g);
    seen.add(key);
  }
  const role: ClusterRole = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: 'orrery-gitops', labels: l.all, annotations: { 'orrery.dev/why-these-verbs': GITOPS_VERBS_WHY } },
    rules,
  };
  const binding: ClusterRoleBinding = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'orrery-gitops', labels: l.all },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'orrery-gitops' },
    subjects: [{ kind: 'ServiceAccount', name: 'orrery-gitops', namespace: ns }],
  };
  return { namespace: ns, component: 'gitops-rbac', objects: [role, binding], bootstrap: true };
}
