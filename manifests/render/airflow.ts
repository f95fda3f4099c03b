import { readFileSync } from 'node:fs';
import type { V1Container, V1EnvVar, V1PodSpec, V1Probe, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { airflowRepository, logCapBytes, namespaceOf, type AirflowDeployment, type Values } from '../values.ts';
import { checksum, claimTemplate, httpProbe, labels, resources, restrictedContainer, secretEnv, type ConfigMap, type Deployment, type Manifest, type Service, type ServiceAccount, type StatefulSet } from './k8s.ts';
import { airflowPolicy } from './policies.ts';
import { markImage, toYaml } from './yaml.ts';

/**
 * One Airflow deployment on Celery, in its own namespace: api-server, scheduler and DAG
 * processor as Deployments, Celery workers as a StatefulSet behind a headless Service
 * (stable hostnames for task logs) with a log volume each and a log-rotation sidecar,
 * Redis as the broker, Postgres for metadata (unless external), flower and a statsd
 * exporter. Airflow 3 (api-server and a standalone DAG processor); DAGs ship in the image,
 * so a new image is a DAG deploy.
 *
 * Names follow the official chart where it helps operators (`airflow-worker`,
 * `airflow-redis`, `airflow-statsd`, port names `worker-logs`, `statsd-ingest`), without the
 * release prefix: the namespace already says which deployment it is.
 */

/** Keys the deployment's Secret must hold (created out of band, never rendered). */
export const AIRFLOW_SECRET_KEYS = {
  fernetKey: 'fernet-key',
  apiSecretKey: 'api-secret-key',
  jwtSecret: 'jwt-secret',
  redisPassword: 'redis-password',
  postgresPassword: 'postgres-password',
  flowerBasicAuth: 'flower-basic-auth',
} as const;

/** The log-rotation program, shipped to the sidecar in a ConfigMap (see logrotate/rotate.ts). */
export const LOGROTATE_SCRIPT = readFileSync(new URL('../logrotate/rotate.ts', import.meta.url), 'utf8');

export const AIRFLOW_HOME = '/opt/airflow';
export const LOGS = `${AIRFLOW_HOME}/logs`;
const UID = 50000; // the official image's airflow user (gid 0, as the chart runs it)
export const WORKER_LOG_PORT = 8793;
export const API_PORT = 8080;

/** Service names inside a deployment's namespace. */
export const AIRFLOW_SERVICES = {
  apiServer: 'airflow-api-server',
  worker: 'airflow-worker',
  redis: 'airflow-redis',
  postgres: 'airflow-postgres',
  flower: 'airflow-flower',
  statsd: 'airflow-statsd',
} as const;

/** airflow.cfg's settings for the deployment (ours, then the values' `config` over them); no secrets. */
export function airflowSettings(d: AirflowDeployment, apiServerHost: string = AIRFLOW_SERVICES.apiServer): Record<string, Record<string, string | number | boolean>> {
  const sections: Record<string, Record<string, string | number | boolean>> = {
    api: { port: API_PORT },
    celery: { worker_concurrency: d.workers.concurrency },
    core: {
      dags_folder: `${AIRFLOW_HOME}/dags`,
      executor: 'CeleryExecutor',
      // Airflow 3: workers run tasks through the api-server's execution API.
      execution_api_server_url: `http://${apiServerHost}:${API_PORT}/execution/`,
      load_examples: 'False',
    },
    dag_processor: { refresh_interval: 60 },
    logging: { base_log_folder: LOGS, worker_log_server_port: WORKER_LOG_PORT },
    metrics: { statsd_host: AIRFLOW_SERVICES.statsd, statsd_on: 'True', statsd_port: 9125, statsd_prefix: 'airflow' },
  };
  for (const [section, kv] of Object.entries(d.config)) sections[section] = { ...sections[section], ...kv };
  return sections;
}

/** airflow.cfg for the deployment; secrets are not here but in env from the Secret. */
export function airflowCfg(d: AirflowDeployment): string {
  const sections = airflowSettings(d);
  return Object.keys(sections)
    .sort()
    .map((s) => `[${s}]\n${Object.keys(sections[s]!).sort().map((k) => `${k} = ${String(sections[s]![k])}`).join('\n')}\n`)
    .join('\n');
}

/**
 * Env every Airflow container shares. Connection URLs are built with Kubernetes' `$(VAR)`
 * expansion from passwords read from the Secret, so one Secret holds plain passwords (no
 * URLs to keep in step with them) and no password is ever in the manifests. Order matters:
 * `$(VAR)` only sees variables defined above it.
 */
export function airflowEnv(d: AirflowDeployment): V1EnvVar[] {
  const s = d.secretName;
  const env: V1EnvVar[] = [
    secretEnv('AIRFLOW__CORE__FERNET_KEY', s, AIRFLOW_SECRET_KEYS.fernetKey),
    secretEnv('AIRFLOW__API__SECRET_KEY', s, AIRFLOW_SECRET_KEYS.apiSecretKey),
    secretEnv('AIRFLOW__API_AUTH__JWT_SECRET', s, AIRFLOW_SECRET_KEYS.jwtSecret),
    secretEnv('REDIS_PASSWORD', s, AIRFLOW_SECRET_KEYS.redisPassword),
    { name: 'AIRFLOW__CELERY__BROKER_URL', value: `redis://:$(REDIS_PASSWORD)@${AIRFLOW_SERVICES.redis}:6379/0` },
  ];
  const ext = d.postgres.external;
  if (ext) {
    env.push(secretEnv('AIRFLOW__DATABASE__SQL_ALCHEMY_CONN', ext.secretName, ext.connectionKey));
    env.push(secretEnv('AIRFLOW__CELERY__RESULT_BACKEND', ext.secretName, ext.resultBackendKey));
  } else {
    const db = `airflow:$(POSTGRES_PASSWORD)@${AIRFLOW_SERVICES.postgres}:5432/airflow`;
    env.push(secretEnv('POSTGRES_PASSWORD', s, AIRFLOW_SECRET_KEYS.postgresPassword));
    env.push({ name: 'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN', value: `postgresql://${db}` });
    env.push({ name: 'AIRFLOW__CELERY__RESULT_BACKEND', value: `db+postgresql://${db}` });
  }
  return env;
}

function jobCheck(jobType: string): V1Probe {
  // The chart's check: the process's own job row must have a recent heartbeat.
  // CONNECTION_CHECK_MAX_COUNT=0 skips the entrypoint's database wait, which would make a
  // probe slow exactly when the database is slow.
  return {
    exec: { command: ['sh', '-c', `CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR exec /entrypoint airflow jobs check --job-type ${jobType} --local`] },
    initialDelaySeconds: 10,
    periodSeconds: 60,
    timeoutSeconds: 20,
    failureThreshold: 5,
  };
}

interface Ctx {
  v: Values;
  d: AirflowDeployment;
  ns: string;
  image: string;
  policy: string;
  cfgSum: string;
}

const configMount: V1VolumeMount = { name: 'config', mountPath: `${AIRFLOW_HOME}/airflow.cfg`, subPath: 'airflow.cfg', readOnly: true };
const configVolume: V1Volume = { name: 'config', configMap: { name: 'airflow-config' } };

/** An Airflow container: the deployment's image, marked for its policy, with the shared env and config. */
function airflowContainer(c: Ctx, name: string, command: string, extra: Partial<V1Container> = {}): V1Container {
  const { env = [], volumeMounts = [], ...rest } = extra;
  return markImage(
    {
      name,
      image: c.image,
      args: ['bash', '-c', `exec airflow ${command}`],
      env: [...airflowEnv(c.d), ...env],
      volumeMounts: [configMount, ...volumeMounts],
      securityContext: restrictedContainer,
      ...rest,
    },
    c.policy,
  );
}

function podSpec(c: Ctx, spec: Omit<V1PodSpec, 'volumes'> & { volumes?: V1Volume[] }, migrate: 'run' | 'wait'): V1PodSpec {
  // The scheduler migrates the database (Airflow serialises concurrent migrations with a
  // lock); everything else waits for the schema to match its image. Init containers run the
  // new image, so a new image is also its own migration: no Helm hook, no Job whose
  // immutable template a GitOps apply could not change.
  const init = migrate === 'run' ? airflowContainer(c, 'migrate-db', 'db migrate') : airflowContainer(c, 'wait-for-migrations', 'db check-migrations --migration-wait-timeout=300');
  return {
    serviceAccountName: 'airflow',
    // Celery and the api-server never call the Kubernetes API.
    automountServiceAccountToken: false,
    securityContext: { runAsUser: UID, runAsGroup: 0, fsGroup: 0, fsGroupChangePolicy: 'OnRootMismatch', runAsNonRoot: true },
    initContainers: [init],
    ...spec,
    volumes: [configVolume, ...(spec.volumes ?? [])],
  };
}

function airflowDeployment(c: Ctx, component: string, replicas: number, spec: Omit<V1PodSpec, 'volumes'> & { volumes?: V1Volume[] }, migrate: 'run' | 'wait'): Deployment {
  const l = labels('airflow', c.d.name, component);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: component, namespace: c.ns, labels: l.all },
    spec: {
      replicas,
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all, annotations: { 'checksum/airflow-config': c.cfgSum } },
        spec: podSpec(c, spec, migrate),
      },
    },
  };
}

/** The Kubernetes objects of one Airflow deployment, grouped in files by component. */
export function renderAirflow(v: Values, d: AirflowDeployment): Manifest[] {
  const ns = namespaceOf(d);
  const cfg = airflowCfg(d);
  const c: Ctx = { v, d, ns, image: `${airflowRepository(v, d)}:${d.image.tag}`, policy: airflowPolicy(d), cfgSum: checksum(cfg) };
  const m = (component: string, objects: Manifest['objects']): Manifest => ({ namespace: ns, component, objects });
  const out: Manifest[] = [];

  out.push(
    m('namespace', [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/part-of': 'orrery', 'orrery.dev/airflow-deployment': d.name } } },
    ]),
  );

  const sa: ServiceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'airflow', namespace: ns, labels: labels('airflow', d.name, 'config').all }, automountServiceAccountToken: false };
  const cm: ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'airflow-config', namespace: ns, labels: labels('airflow', d.name, 'config').all }, data: { 'airflow.cfg': cfg } };
  out.push(m('config', [sa, cm]));

  // api-server: UI, REST API, and the execution API the workers report to.
  const apiL = labels('airflow', d.name, 'api-server');
  const apiProbe = (o: Parameters<typeof httpProbe>[2]) => httpProbe('/api/v2/monitor/health', 'http', { timeoutSeconds: 5, ...o });
  out.push(
    m('api-server', [
      airflowDeployment(
        c,
        'api-server',
        d.apiServer.replicas,
        {
          containers: [
            airflowContainer(c, 'api-server', 'api-server', {
              ports: [{ name: 'http', containerPort: API_PORT }],
              resources: resources(d.apiServer.resources),
              // /monitor/health answers 200 while the process serves, whatever the scheduler's
              // state, so a scheduler outage never restarts the UI.
              startupProbe: apiProbe({ periodSeconds: 10, failureThreshold: 30 }),
              livenessProbe: apiProbe({ periodSeconds: 10, failureThreshold: 5 }),
              readinessProbe: apiProbe({ periodSeconds: 10, failureThreshold: 3 }),
            }),
          ],
        },
        'wait',
      ),
      service(ns, AIRFLOW_SERVICES.apiServer, apiL, [{ name: 'http', port: API_PORT, targetPort: 'http' }]),
    ]),
  );

  const emptyLogs = { volumes: [{ name: 'logs', emptyDir: {} }] };
  const logsMount: V1VolumeMount = { name: 'logs', mountPath: LOGS };
  out.push(
    m('scheduler', [
      airflowDeployment(
        c,
        'scheduler',
        d.scheduler.replicas,
        {
          containers: [airflowContainer(c, 'scheduler', 'scheduler', { resources: resources(d.scheduler.resources), livenessProbe: jobCheck('SchedulerJob'), volumeMounts: [logsMount] })],
          ...emptyLogs,
        },
        'run',
      ),
    ]),
  );
  out.push(
    m('dag-processor', [
      airflowDeployment(
        c,
        'dag-processor',
        d.dagProcessor.replicas,
        {
          containers: [airflowContainer(c, 'dag-processor', 'dag-processor', { resources: resources(d.dagProcessor.resources), livenessProbe: jobCheck('DagProcessorJob'), volumeMounts: [logsMount] })],
          ...emptyLogs,
        },
        'wait',
      ),
    ]),
  );

  out.push(m('worker', renderWorkers(c)));
  out.push(m('redis', renderRedis(c)));
  if (!d.postgres.external) out.push(m('postgres', renderPostgres(c)));
  if (d.flower.enabled) out.push(m('flower', renderFlower(c)));
  out.push(m('statsd', renderStatsd(c)));
  return out;
}

function service(ns: string, name: string, l: ReturnType<typeof labels>, ports: NonNullable<NonNullable<Service['spec']>['ports']>, headless = false): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: ns, labels: l.all },
    spec: { ...(headless ? { clusterIP: 'None' } : {}), selector: l.selector, ports },
  };
}

/**
 * Celery workers as a StatefulSet: each pod has a stable DNS name
 * (`worker-0.airflow-worker.<ns>.svc.cluster.local`, what `socket.getfqdn()` returns in it
 * and so what Airflow records as the task's hostname), which the api-server uses to fetch
 * a running or finished task's log from the worker's log server on 8793, and a volume of
 * its own that outlives restarts, kept in bounds by the log-rotation sidecar.
 */
function renderWorkers(c: Ctx): Manifest['objects'] {
  const { d, ns } = c;
  const l = labels('airflow', d.name, 'worker');
  const logrotate: ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'airflow-logrotate', namespace: ns, labels: l.all },
    data: { 'logrotate.mts': LOGROTATE_SCRIPT },
  };
  const r = d.logRotation;
  const sts: StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'worker', namespace: ns, labels: l.all },
    spec: {
      serviceName: AIRFLOW_SERVICES.worker,
      replicas: d.workers.replicas,
      // Workers are independent: start and replace them all at once, as the chart does.
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate' },
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all, annotations: { 'checksum/airflow-config': c.cfgSum, 'checksum/logrotate': checksum(LOGROTATE_SCRIPT) } },
        spec: podSpec(
          c,
          {
            // Celery's warm shutdown: on SIGTERM a worker takes no new task and finishes the
            // running ones; this is how long it gets before SIGKILL.
            terminationGracePeriodSeconds: d.workers.terminationGracePeriodSeconds,
            containers: [
              airflowContainer(c, 'worker', 'celery worker', {
                env: [
                  // dumb-init sends SIGTERM to celery alone (not its whole group), so running
                  // tasks are not killed and the warm shutdown can drain them.
                  { name: 'DUMB_INIT_SETSID', value: '0' },
                ],
                ports: [{ name: 'worker-logs', containerPort: WORKER_LOG_PORT }],
                resources: resources(d.workers.resources),
                volumeMounts: [{ name: 'logs', mountPath: LOGS }],
                livenessProbe: {
                  exec: {
                    command: [
                      'sh',
                      '-c',
                      'CONNECTION_CHECK_MAX_COUNT=0 exec /entrypoint python -m celery --app airflow.providers.celery.executors.celery_executor.app inspect ping -d celery@$(hostname)',
                    ],
                  },
                  initialDelaySeconds: 10,
                  periodSeconds: 60,
                  timeoutSeconds: 20,
                  failureThreshold: 5,
                },
              }),
              {
                name: 'logrotate',
                image: c.v.images.logrotate,
                command: [
                  'node',
                  '/opt/logrotate/logrotate.mts',
                  '--dir',
                  LOGS,
                  '--max-age-hours',
                  String(r.maxAgeHours),
                  '--max-total-bytes',
                  String(logCapBytes(d)),
                  '--active-seconds',
                  String(r.activeSeconds),
                  '--interval-seconds',
                  String(r.intervalSeconds),
                ],
                resources: resources(r.resources),
                securityContext: { ...restrictedContainer, readOnlyRootFilesystem: true },
                volumeMounts: [
                  { name: 'logs', mountPath: LOGS },
                  { name: 'logrotate', mountPath: '/opt/logrotate', readOnly: true },
                ],
              },
            ],
            volumes: [{ name: 'logrotate', configMap: { name: 'airflow-logrotate' } }],
          },
          'wait',
        ),
      },
      volumeClaimTemplates: [claimTemplate('logs', d.workers.logs.size, d.workers.logs.storageClass)],
    },
  };
  // Headless: DNS gives each worker pod its own name instead of one virtual IP.
  const headless = service(ns, AIRFLOW_SERVICES.worker, l, [{ name: 'worker-logs', port: WORKER_LOG_PORT, targetPort: 'worker-logs' }], true);
  return [logrotate, headless, sts];
}

/**
 * Redis as the Celery broker, without persistence: a restart loses queued messages, and
 * the scheduler re-queues tasks stuck in `queued` after [scheduler] task_queued_timeout.
 */
function renderRedis(c: Ctx): Manifest['objects'] {
  const { d, ns } = c;
  const l = labels('redis', d.name, 'broker');
  const ping: V1Probe = { exec: { command: ['sh', '-c', 'redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG'] }, periodSeconds: 10, timeoutSeconds: 5 };
  const dep: Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'redis', namespace: ns, labels: l.all },
    spec: {
      replicas: 1,
      // One broker at a time: never two Redis with half the queue each.
      strategy: { type: 'Recreate' },
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsUser: 999, runAsGroup: 999, fsGroup: 999, runAsNonRoot: true },
          containers: [
            {
              name: 'redis',
              image: c.v.images.redis,
              args: ['redis-server', '--requirepass', '$(REDIS_PASSWORD)'],
              env: [secretEnv('REDIS_PASSWORD', d.secretName, AIRFLOW_SECRET_KEYS.redisPassword)],
              ports: [{ name: 'redis', containerPort: 6379 }],
              resources: resources(d.redis.resources),
              securityContext: restrictedContainer,
              readinessProbe: ping,
              livenessProbe: { ...ping, failureThreshold: 5 },
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
          volumes: [{ name: 'data', emptyDir: {} }],
        },
      },
    },
  };
  return [service(ns, AIRFLOW_SERVICES.redis, l, [{ name: 'redis', port: 6379, targetPort: 'redis' }]), dep];
}

function renderPostgres(c: Ctx): Manifest['objects'] {
  const { d, ns } = c;
  const l = labels('postgres', d.name, 'metadata-db');
  const ready: V1Probe = { exec: { command: ['pg_isready', '-U', 'airflow', '-d', 'airflow', '-h', '127.0.0.1'] }, periodSeconds: 10, timeoutSeconds: 5 };
  const sts: StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'postgres', namespace: ns, labels: l.all },
    spec: {
      serviceName: AIRFLOW_SERVICES.postgres,
      replicas: 1,
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsUser: 999, runAsGroup: 999, fsGroup: 999, runAsNonRoot: true },
          containers: [
            {
              name: 'postgres',
              image: c.v.images.postgres,
              env: [
                { name: 'POSTGRES_USER', value: 'airflow' },
                { name: 'POSTGRES_DB', value: 'airflow' },
                secretEnv('POSTGRES_PASSWORD', d.secretName, AIRFLOW_SECRET_KEYS.postgresPassword),
                // A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
              ],
              ports: [{ name: 'postgres', containerPort: 5432 }],
              resources: resources(d.postgres.resources),
              securityContext: restrictedContainer,
              readinessProbe: ready,
              livenessProbe: { ...ready, failureThreshold: 6 },
              volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
            },
          ],
        },
      },
      volumeClaimTemplates: [claimTemplate('data', d.postgres.storage, d.postgres.storageClass)],
    },
  };
  return [service(ns, AIRFLOW_SERVICES.postgres, l, [{ name: 'postgres', port: 5432, targetPort: 'postgres' }], true), sts];
}

function renderFlower(c: Ctx): Manifest['objects'] {
  const { d, ns } = c;
  const l = labels('airflow', d.name, 'flower');
  const probe: V1Probe = { tcpSocket: { port: 'flower' }, periodSeconds: 10, timeoutSeconds: 5 };
  const dep = airflowDeployment(
    c,
    'flower',
    1,
    {
      containers: [
        airflowContainer(c, 'flower', 'celery flower', {
          // `user:password` pairs; without the key, flower serves without a login.
          env: [secretEnv('AIRFLOW__CELERY__FLOWER_BASIC_AUTH', d.secretName, AIRFLOW_SECRET_KEYS.flowerBasicAuth, true)],
          ports: [{ name: 'flower', containerPort: 5555 }],
          resources: resources(d.flower.resources),
          readinessProbe: probe,
          livenessProbe: { ...probe, failureThreshold: 5 },
        }),
      ],
    },
    'wait',
  );
  return [service(ns, AIRFLOW_SERVICES.flower, l, [{ name: 'flower', port: 5555, targetPort: 'flower' }]), dep];
}

/** statsd names → Prometheus names with labels, for the metrics the alerts and dashboards use. */
export const STATSD_MAPPINGS = {
  mappings: [
    { match: 'airflow.scheduler_heartbeat', match_metric_type: 'counter', name: 'airflow_scheduler_heartbeat' },
    { match: 'airflow.dagrun.duration.success.*', name: 'airflow_dagrun_duration', labels: { dag_id: '$1', state: 'success' } },
    { match: 'airflow.dagrun.duration.failed.*', name: 'airflow_dagrun_duration', labels: { dag_id: '$1', state: 'failed' } },
    { match: 'airflow.ti.finish.*.*.*', name: 'airflow_ti_finish', labels: { dag_id: '$1', task_id: '$2', state: '$3' } },
    { match: 'airflow.pool.open_slots.*', name: 'airflow_pool_open_slots', labels: { pool: '$1' } },
    { match: 'airflow.executor.queued_tasks', name: 'airflow_executor_queued_tasks' },
    { match: 'airflow.executor.running_tasks', name: 'airflow_executor_running_tasks' },
  ],
};

function renderStatsd(c: Ctx): Manifest['objects'] {
  const { d, ns } = c;
  const l = labels('statsd-exporter', d.name, 'metrics');
  const mappings = toYaml(STATSD_MAPPINGS);
  const cm: ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'statsd-mappings', namespace: ns, labels: l.all }, data: { 'mappings.yml': mappings } };
  const dep: Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'statsd-exporter', namespace: ns, labels: l.all },
    spec: {
      replicas: 1,
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all, annotations: { 'checksum/statsd-mappings': checksum(mappings) } },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true },
          containers: [
            {
              name: 'statsd-exporter',
              image: c.v.images.statsdExporter,
              args: ['--statsd.mapping-config=/etc/statsd-exporter/mappings.yml', '--statsd.listen-udp=:9125', '--web.listen-address=:9102'],
              ports: [
                { name: 'statsd-ingest', containerPort: 9125, protocol: 'UDP' },
                { name: 'statsd-scrape', containerPort: 9102 },
              ],
              resources: resources(d.statsd.resources),
              securityContext: { ...restrictedContainer, readOnlyRootFilesystem: true },
              readinessProbe: httpProbe('/metrics', 'statsd-scrape', { periodSeconds: 10, timeoutSeconds: 5 }),
              livenessProbe: httpProbe('/metrics', 'statsd-scrape', { periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 5 }),
              volumeMounts: [{ name: 'mappings', mountPath: '/etc/statsd-exporter', readOnly: true }],
            },
          ],
          volumes: [{ name: 'mappings', configMap: { name: 'statsd-mappings' } }],
        },
      },
    },
  };
  const svc = service(ns, AIRFLOW_SERVICES.statsd, l, [
    { name: 'statsd-ingest', port: 9125, targetPort: 'statsd-ingest', protocol: 'UDP' },
    { name: 'statsd-scrape', port: 9102, targetPort: 'statsd-scrape' },
  ]);
  return [cm, svc, dep];
}
