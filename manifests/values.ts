import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { ConfigSchema } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { ImagePolicy } from '../core/gitops-config.ts';
import { parseQuantity, QUANTITY } from './quantity.ts';

/**
 * The values file of an installation: every Airflow deployment (one per team or customer)
 * and Orrery's own services, from which `manifests/render` builds the Kubernetes objects
 * and the compose file. Parsed once with zod; a bad value stops the render with a message
 * that names the key (`deployments.1.workers.logs.size: …`), as core/config.ts does.
 */

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const dnsLabel = (max: number) =>
  z
    .string()
    .max(max, `at most ${max} characters`)
    .regex(DNS_LABEL, 'a DNS label: lower-case letters, digits and -, starting and ending with a letter or digit');
const hostname = z
  .string()
  .max(253)
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'a DNS name, e.g. collect.example.com');
const hostPort = z.string().regex(/^[^\s:/]+:\d{1,5}$/, 'expected host:port, e.g. kafka.example.com:9092');
const quantity = z.string().regex(QUANTITY, 'a Kubernetes quantity, e.g. 500m, 512Mi, 10Gi');
// Same grammar as gitops/update/setters.ts, so that the controller can always write back
// what we render.
const repository = z
  .string()
  .max(255)
  .regex(
    /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/,
    'an image repository without tag, e.g. registry.example.com/team/airflow',
  );
const tag = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, 'an image tag, e.g. 3.1.0');
/** A full third-party image reference (`redis:7.4.5`, `prom/prometheus:v3.5.0@sha256:…`). */
const imageRef = z.string().regex(/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[a-f0-9]{64})?$/, 'an image reference, e.g. redis:7.4.5');
const registry = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, 'a registry host with optional path, e.g. registry.example.com or ghcr.io/acme');

const ResourceList = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() });
/** Requests and limits of a container; defaults differ per component. */
const Resources = z.strictObject({ requests: ResourceList.optional(), limits: ResourceList.optional() });
export type Resources = z.infer<typeof Resources>;
const resources = (requests: { cpu: string; memory: string }, memoryLimit: string) =>
  Resources.default({ requests, limits: { memory: memoryLimit } });

/** A policy's update rule, passed through to the generated GitOps image policy. */
const PolicyRule = z
  .strictObject({
    // The GitOps config's own schemas: what is valid here is valid there.
    tags: ImagePolicy.shape.tags,
    mode: ImagePolicy.shape.mode,
  })
  .prefault({});

/** An image built by us (Airflow with DAGs, Orrery): its tag is what GitOps moves. */
const OwnImage = z.strictObject({
  /** Default: `<registry>/<deployment>/airflow` or `<registry>/orrery/<service>`. */
  repository: repository.optional(),
  tag: tag.optional(),
  policy: PolicyRule,
});

const Ingress = z.strictObject({
  host: hostname,
  className: z.string().min(1).optional(),
  /** Secret of type kubernetes.io/tls in the same namespace. */
  tlsSecret: dnsLabel(253).optional(),
  annotations: z.record(z.string(), z.string()).default({}),
});

const Deployment = z.strictObject({
  /** The team or customer: names the namespace, the image and the GitOps policy. */
  name: dnsLabel(40),
  /** Default `airflow-<name>`. */
  namespace: dnsLabel(63).optional(),
  image: OwnImage.extend({ tag }),
  /**
   * One Secret in the deployment's namespace, created out of band (sealed-secrets,
   * external-secrets, kubectl), never rendered. Keys: fernet-key, api-secret-key,
   * jwt-secret, redis-password, postgres-password (built-in Postgres), flower-basic-auth
   * (optional).
   */
  secretName: dnsLabel(253).default('airflow'),
  apiServer: z
    .strictObject({ replicas: z.number().int().min(1).max(20).default(1), resources: resources({ cpu: '250m', memory: '1Gi' }, '2Gi') })
    .prefault({}),
  scheduler: z
    .strictObject({ replicas: z.number().int().min(1).max(10).default(1), resources: resources({ cpu: '500m', memory: '1Gi' }, '2Gi') })
    .prefault({}),
  dagProcessor: z
    .strictObject({ replicas: z.number().int().min(1).max(10).default(1), resources: resources({ cpu: '250m', memory: '1Gi' }, '2Gi') })
    .prefault({}),
  workers: z
    .strictObject({
      replicas: z.number().int().min(1).max(200).default(2),
      /** Celery's worker_concurrency: task slots per worker. */
      concurrency: z.number().int().min(1).max(256).default(16),
      resources: resources({ cpu: '500m', memory: '2Gi' }, '4Gi'),
      /** Seconds a worker gets on SIGTERM to finish running tasks (Celery warm shutdown). */
      terminationGracePeriodSeconds: z.number().int().min(30).max(86_400).default(600),
      logs: z.strictObject({ size: quantity.default('10Gi'), storageClass: z.string().min(1).optional() }).prefault({}),
    })
    .prefault({}),
  logRotation: z
    .strictObject({
      /** Delete task logs older than this. */
      maxAgeHours: z.number().positive().default(24 * 7),
      /** Oldest first until the logs fit; default 80% of workers.logs.size. */
      maxTotalSize: quantity.optional(),
      /** Never touch a file modified this recently: it is probably being written. */
      activeSeconds: z.number().int().min(0).default(300),
      intervalSeconds: z.number().int().min(10).default(600),
      resources: resources({ cpu: '10m', memory: '64Mi' }, '128Mi'),
    })
    .prefault({}),
  redis: z.strictObject({ resources: resources({ cpu: '100m', memory: '256Mi' }, '512Mi') }).prefault({}),
  postgres: z
    .strictObject({
      /** An existing database instead of the built-in StatefulSet. */
      external: z
        .strictObject({
          /** Secret in the deployment's namespace holding the SQLAlchemy URL. */
          secretName: dnsLabel(253),
          connectionKey: z.string().min(1).default('connection'),
          /** Celery result backend, `db+postgresql://…`. */
          resultBackendKey: z.string().min(1).default('result-backend'),
        })
        .optional(),
      storage: quantity.default('8Gi'),
      storageClass: z.string().min(1).optional(),
      resources: resources({ cpu: '250m', memory: '512Mi' }, '1Gi'),
    })
    .prefault({}),
  flower: z.strictObject({ enabled: z.boolean().default(true), resources: resources({ cpu: '50m', memory: '256Mi' }, '512Mi') }).prefault({}),
  statsd: z.strictObject({ resources: resources({ cpu: '50m', memory: '64Mi' }, '128Mi') }).prefault({}),
  /** Extra airflow.cfg settings: `{ core: { parallelism: "64" } }`; they win over ours. */
  config: z.record(z.string().regex(/^[a-z_]+$/, 'an airflow.cfg section'), z.record(z.string().regex(/^[a-z0-9_]+$/), z.union([z.string(), z.number(), z.boolean()]))).default({}),
});
export type AirflowDeployment = z.infer<typeof Deployment>;

const Service = (replicas: number, requests: { cpu: string; memory: string }, memoryLimit: string) =>
  z
    .strictObject({
      image: OwnImage.prefault({}),
      replicas: z.number().int().min(1).max(100).default(replicas),
      resources: resources(requests, memoryLimit),
    })
    .prefault({});

export const ValuesSchema = z
  .strictObject({
    /** Where our own images live: `<registry>/<deployment>/airflow`, `<registry>/orrery/<service>`. */
    registry,
    /**
     * This file's path in the manifests repository. When set, the generated GitOps policies
     * may also rewrite the `:tag` markers on the image tags in it, so a push moves the values
     * and the rendered manifests together and a re-render changes nothing.
     */
    valuesFile: z.string().regex(/^[^/].*\.ya?ml$/, 'a path relative to the repository root, ending in .yaml').optional(),
    /** Third-party images, pinned: GitOps does not move them. */
    images: z
      .strictObject({
        redis: imageRef.default('redis:7.4.5'),
        postgres: imageRef.default('postgres:17.6'),
        kafka: imageRef.default('apache/kafka:4.1.0'),
        prometheus: imageRef.default('prom/prometheus:v3.5.0'),
        statsdExporter: imageRef.default('prom/statsd-exporter:v0.28.0'),
        /** Runs manifests/logrotate (shipped in a ConfigMap): any Node ≥ 22.18 image. */
        logrotate: imageRef.default('node:24-alpine'),
      })
      .prefault({}),
    orrery: z
      .strictObject({
        namespace: dnsLabel(63).default('orrery'),
        /** Default tag of every Orrery image. */
        tag,
        /** Secret (created out of band) whose keys become env: DATABASE_URL, REDIS_URL, GIT_TOKEN, … */
        credentialsSecret: dnsLabel(253).default('orrery-credentials'),
        /** Orrery's config file (core/config.ts), checked with its own schema. Secrets as `${VAR}`. */
        config: z.record(z.string(), z.unknown()).default({}),
        ingest: z
          .strictObject({
            image: OwnImage.prefault({}),
            resources: resources({ cpu: '250m', memory: '256Mi' }, '512Mi'),
            autoscaling: z
              .strictObject({
                minReplicas: z.number().int().min(1).default(2),
                maxReplicas: z.number().int().min(1).default(10),
                targetCPUUtilizationPercentage: z.number().int().min(1).max(100).default(70),
              })
              .prefault({}),
            /** Pods that must stay up through voluntary disruptions (node drains). */
            minAvailable: z.number().int().min(0).default(1),
            ingress: Ingress.optional(),
            /** Size limit of the disk spool (an emptyDir) that holds events while Kafka is away. */
            spoolSize: quantity.default('2Gi'),
          })
          .prefault({}),
        router: Service(2, { cpu: '250m', memory: '256Mi' }, '512Mi'),
        sinks: Service(2, { cpu: '250m', memory: '256Mi' }, '512Mi'),
        gitops: z
          .strictObject({
            enabled: z.boolean().default(true),
            image: OwnImage.prefault({}),
            resources: resources({ cpu: '100m', memory: '256Mi' }, '512Mi'),
            /** Public host for registry webhooks (`/webhooks/registry/<provider>`). */
            ingress: Ingress.optional(),
          })
          .prefault({}),
      }),
    kafka: z
      .strictObject({
        /** External brokers; when absent a single-node KRaft Kafka runs in Orrery's namespace. */
        brokers: z.array(hostPort).min(1).optional(),
        storage: quantity.default('20Gi'),
        storageClass: z.string().min(1).optional(),
        resources: resources({ cpu: '500m', memory: '1Gi' }, '2Gi'),
      })
      .prefault({}),
    prometheus: z
      .strictObject({
        /** Two for an HA pair: both scrape everything, Alertmanager dedups their alerts. */
        replicas: z.number().int().min(1).max(5).default(2),
        retention: z.string().regex(/^\d+[smhdwy]$/, 'a duration, e.g. 15d').default('15d'),
        storage: quantity.default('20Gi'),
        storageClass: z.string().min(1).optional(),
        scrapeInterval: z.string().regex(/^\d+[smh]$/, 'a duration, e.g. 30s').default('30s'),
        alertmanagers: z.array(hostPort).default([]),
        /** kube-state-metrics (for the failed-rollout alerts), e.g. kube-state-metrics.kube-system.svc:8080. */
        kubeStateMetrics: hostPort.optional(),
        resources: resources({ cpu: '250m', memory: '1Gi' }, '2Gi'),
        alerts: z
          .strictObject({
            /** Failed attempts over all attempts, per destination. */
            sinkFailureRatio: z.number().min(0).max(1).default(0.05),
            consumerLag: z.number().int().min(1).default(10_000),
            /** Dead letters in 15 minutes that page. */
            deadLetters: z.number().int().min(0).default(0),
            /** How long the ingest spool may hold events before it pages. */
            spoolFor: z.string().regex(/^\d+[smh]$/).default('5m'),
          })
          .prefault({}),
      })
      .prefault({}),
    deployments: z.array(Deployment).min(1, 'at least one Airflow deployment'),
  })
  .superRefine((v, ctx) => {
    const seen = new Map<string, number>();
    const namespaces = new Map<string, string>([[v.orrery.namespace, 'orrery.namespace']]);
    v.deployments.forEach((d, i) => {
      const at = seen.get(d.name);
      if (at !== undefined) ctx.addIssue({ code: 'custom', path: ['deployments', i, 'name'], message: `"${d.name}" is also deployments.${at}.name` });
      seen.set(d.name, i);
      const ns = d.namespace ?? `airflow-${d.name}`;
      const other = namespaces.get(ns);
      if (other) ctx.addIssue({ code: 'custom', path: ['deployments', i, 'namespace'], message: `namespace "${ns}" is also used by ${other}` });
      namespaces.set(ns, `deployments.${i}`);
      if (d.logRotation.maxTotalSize && parseQuantity(d.logRotation.maxTotalSize) >= parseQuantity(d.workers.logs.size)) {
        ctx.addIssue({ code: 'custom', path: ['deployments', i, 'logRotation', 'maxTotalSize'], message: `must be below workers.logs.size (${d.workers.logs.size}), or the volume fills before rotation starts` });
      }
      if (d.logRotation.activeSeconds >= d.logRotation.maxAgeHours * 3600) {
        ctx.addIssue({ code: 'custom', path: ['deployments', i, 'logRotation', 'activeSeconds'], message: 'must be below maxAgeHours' });
      }
    });
    const a = v.orrery.ingest.autoscaling;
    if (a.maxReplicas < a.minReplicas) ctx.addIssue({ code: 'custom', path: ['orrery', 'ingest', 'autoscaling', 'maxReplicas'], message: 'must be at least minReplicas' });
    if (v.orrery.ingest.minAvailable >= a.minReplicas && a.minReplicas > 0) {
      ctx.addIssue({ code: 'custom', path: ['orrery', 'ingest', 'minAvailable'], message: `must be below autoscaling.minReplicas (${a.minReplicas}), or no node can ever be drained` });
    }
    const cfgKafka = v.orrery.config.kafka as { brokers?: unknown } | undefined;
    if (cfgKafka && typeof cfgKafka === 'object' && cfgKafka.brokers !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['orrery', 'config', 'kafka', 'brokers'], message: 'set kafka.brokers at the top level instead: the render fills this in' });
    }
    // Orrery's own config is checked with Orrery's own schema, so a typo fails here and
    // not in a crash-looping pod. A `${VAR}` stands for env from the credentials Secret,
    // known only in the pod: a complaint about such a field is not ours to make.
    const checked = ConfigSchema.safeParse(v.orrery.config);
    if (!checked.success) {
      for (const issue of checked.error.issues) {
        if (isPlaceholder(valueAt(v.orrery.config, issue.path))) continue;
        const message = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
        ctx.addIssue({ code: 'custom', path: ['orrery', 'config', ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], message });
      }
    }
  });

export type Values = z.infer<typeof ValuesSchema>;

const isPlaceholder = (value: unknown): boolean => typeof value === 'string' && /\$\{[A-Za-z_][A-Za-z0-9_]*\}/.test(value);

function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let node = root;
  for (const key of path) {
    if (!node || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/**
 * Validates parsed values (a YAML mapping already read) and fills defaults. Throws a
 * {@link ConfigError} whose message names every bad key.
 *
 * @example const values = parseValues(parseYaml(text), 'values.yaml');
 */
export function parseValues(raw: unknown, source = 'values'): Values {
  const parsed = ValuesSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.');
      const what = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
      return `  - ${key || '(root)'}: ${what}`;
    });
    throw new ConfigError(`Invalid values in ${source}:\n${lines.join('\n')}`, { details: { issues: parsed.error.issues } });
  }
  return parsed.data;
}

/**
 * Reads and validates a values file.
 *
 * @example const values = loadValues('manifests/environments/dev/values.yaml');
 */
export function loadValues(path: string, readFile: (p: string) => string = (p) => readFileSync(p, 'utf8')): Values {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ConfigError(`Cannot read values file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? `:${err.linePos[0].line}:${err.linePos[0].col}` : '';
    throw new ConfigError(`Values file ${path}${where} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new ConfigError(`Values file ${path} must hold a YAML mapping at the top level`);
  }
  return parseValues(doc, path);
}

/** A deployment's namespace. */
export const namespaceOf = (d: AirflowDeployment): string => d.namespace ?? `airflow-${d.name}`;

/** A deployment's Airflow image repository. */
export const airflowRepository = (v: Values, d: AirflowDeployment): string => d.image.repository ?? `${v.registry}/${d.name}/airflow`;

/** The byte cap of a deployment's task logs: the given one, or 80% of the volume. */
export function logCapBytes(d: AirflowDeployment): number {
  return d.logRotation.maxTotalSize ? parseQuantity(d.logRotation.maxTotalSize) : Math.floor(parseQuantity(d.workers.logs.size) * 0.8);
}
