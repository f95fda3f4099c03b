import { parseQuantity } from '../quantity.ts';
import { airflowRepository, type AirflowDeployment, type Resources, type Values } from '../values.ts';
import { airflowSettings, API_PORT, LOGS } from './airflow.ts';
import { orreryConfig, singleNodeKafkaEnv } from './orrery.ts';
import { ORRERY_SERVICES, orreryImage, type OrreryService } from './policies.ts';
import { toYaml } from './yaml.ts';

/**
 * Marathon app definitions for the legacy DC/OS users: one root group `/orrery` with a
 * group for Orrery's services (`/orrery/platform`) and one per Airflow deployment
 * (`/orrery/<deployment>`), posted in one go with `dcos marathon group add marathon.json`
 * (or `PUT /v2/groups`). Field names follow Marathon's 1.5+ app API (docs/rest-api in
 * mesosphere/marathon): `container.portMappings` with `networks: [{mode: container/bridge}]`
 * rather than the deprecated `container.docker.network`. Containers run on the Universal
 * Container Runtime (`type: MESOS` with a Docker image), which file-based secrets need.
 *
 * - Apps find each other through DC/OS named VIPs: a port mapping labelled
 *   `VIP_0: /orrery-ml-redis:6379` answers at
 *   `orrery-ml-redis.marathon.l4lb.thisdcos.directory:6379`, whatever agent and host
 *   port the task got.
 * - Secrets never appear: env values are `{ secret }` references to the DC/OS secret store
 *   (`orrery/<deployment>/<key>`, `orrery/<key>`), created out of band. Marathon cannot
 *   compose a URL from a password, so the Airflow secrets hold whole connection URLs.
 * - Orrery's config file is a file-based secret (`orrery/config`, from the `orrery.yaml`
 *   rendered beside marathon.json): Marathon has no ConfigMaps.
 * - JSON has no comments, so the images carry no GitOps markers: the values file is the
 *   source of truth (its tags are marked and follow pushes), and a re-render moves them.
 * - Not rendered: the GitOps controller (it syncs Kubernetes), the Prometheus pairs, and
 *   the log-rotation sidecar (an app has one container; see manifests/README.md).
 */

export interface MarathonOutput {
  /** `marathon.json` (the root group) and `orrery.yaml` (to store as the secret `orrery/config`). */
  files: Map<string, string>;
}

type Env = Record<string, string | { secret: string }>;

interface MarathonApp {
  id: string;
  cmd?: string;
  args?: string[];
  container: {
    type: 'MESOS';
    docker: { image: string; forcePullImage: boolean };
    portMappings: Array<{ name: string; containerPort: number; hostPort: 0; protocol: 'tcp' | 'udp'; labels?: Record<string, string> }>;
    volumes?: Array<Record<string, unknown>>;
  };
  networks: Array<{ mode: 'container/bridge' }>;
  cpus: number;
  mem: number;
  disk: number;
  instances: number;
  env: Env;
  secrets?: Record<string, { source: string }>;
  healthChecks: Array<Record<string, unknown>>;
  dependencies?: string[];
  labels: Record<string, string>;
  upgradeStrategy?: { minimumHealthCapacity: number; maximumOverCapacity: number };
  taskKillGracePeriodSeconds?: number;
}

interface MarathonGroup {
  id: string;
  apps?: MarathonApp[];
  groups?: MarathonGroup[];
}

export const ROOT_GROUP = '/orrery';
const ORRERY_PORT = 8080;
const CONFIG_PATH = '/etc/orrery/orrery.yaml';
/** Keys of a deployment's secrets in the DC/OS store, under `orrery/<deployment>/`. */
export const MARATHON_AIRFLOW_SECRETS = ['fernet-key', 'api-secret-key', 'jwt-secret', 'redis-password', 'broker-url', 'sql-alchemy-conn', 'result-backend', 'postgres-password'] as const;

/** The address of a named VIP. */
export const vipHost = (name: string): string => `${name}.marathon.l4lb.thisdcos.directory`;

/** Marathon's cpus: the request (a share), or the limit, or a tenth of a core. */
const cpus = (r: Resources): number => Number(parseQuantity(r.requests?.cpu ?? r.limits?.cpu ?? '100m').toFixed(3));
/** Marathon's mem is the hard limit, in MiB: the limit, else the request. */
const mem = (r: Resources): number => Math.ceil(parseQuantity(r.limits?.memory ?? r.requests?.memory ?? '128Mi') / 2 ** 20);
const mib = (q: string): number => Math.ceil(parseQuantity(q) / 2 ** 20);

function port(name: string, containerPort: number, vip?: string, protocol: 'tcp' | 'udp' = 'tcp'): MarathonApp['container']['portMappings'][number] {
  return { name, containerPort, hostPort: 0, protocol, ...(vip ? { labels: { VIP_0: `/${vip}:${containerPort}` } } : {}) };
}

/** Env with sorted keys, secret references resolved into the app's `secrets`. */
function withSecrets(env: Env): { env: Env; secrets?: Record<string, { source: string }> } {
  const sorted: Env = {};
  const secrets: Record<string, { source: string }> = {};
  for (const k of Object.keys(env).sort()) {
    const value = env[k]!;
    if (typeof value === 'string') sorted[k] = value;
    else {
      const ref = value.secret.replace(/[^A-Za-z0-9]+/g, '-');
      secrets[ref] = { source: value.secret };
      sorted[k] = { secret: ref };
    }
  }
  return Object.keys(secrets).length > 0 ? { env: sorted, secrets } : { env: sorted };
}

/**
 * A persistent local volume: Marathon creates it at a path relative to the sandbox, and a
 * second volume mounts that path where the image expects its data.
 */
function persistent(name: string, size: string, mountPath: string): NonNullable<MarathonApp['container']['volumes']> {
  return [
    { containerPath: name, mode: 'RW', persistent: { type: 'root', size: mib(size) } },
    { containerPath: mountPath, hostPath: name, mode: 'RW' },
  ];
}
/** Stateful apps cannot run two tasks on one volume: replace in place. */
const STATEFUL = { minimumHealthCapacity: 0, maximumOverCapacity: 0 };

function app(
  id: string,
  o: {
    image: string;
    r: Resources;
    instances: number;
    cmd?: string;
    args?: string[];
    env?: Env;
    ports?: MarathonApp['container']['portMappings'];
    volumes?: MarathonApp['container']['volumes'];
    health: Array<Record<string, unknown>>;
    dependencies?: string[];
    labels: Record<string, string>;
    stateful?: boolean;
    killGraceSeconds?: number;
  },
): MarathonApp {
  return {
    id,
    ...(o.cmd ? { cmd: o.cmd } : {}),
    ...(o.args ? { args: o.args } : {}),
    container: {
      type: 'MESOS',
      docker: { image: o.image, forcePullImage: false },
      portMappings: o.ports ?? [],
      ...(o.volumes ? { volumes: o.volumes } : {}),
    },
    networks: [{ mode: 'container/bridge' }],
    cpus: cpus(o.r),
    mem: mem(o.r),
    disk: 0,
    instances: o.instances,
    ...withSecrets(o.env ?? {}),
    healthChecks: o.health,
    ...(o.dependencies?.length ? { dependencies: [...o.dependencies].sort() } : {}),
    labels: o.labels,
    ...(o.stateful ? { upgradeStrategy: STATEFUL } : {}),
    ...(o.killGraceSeconds ? { taskKillGracePeriodSeconds: o.killGraceSeconds } : {}),
  };
}

const httpCheck = (path: string, grace = 60) => ({ protocol: 'MESOS_HTTP', path, portIndex: 0, gracePeriodSeconds: grace, intervalSeconds: 10, timeoutSeconds: 5, maxConsecutiveFailures: 5 });
const tcpCheck = (grace = 60) => ({ protocol: 'MESOS_TCP', portIndex: 0, gracePeriodSeconds: grace, intervalSeconds: 10, timeoutSeconds: 5, maxConsecutiveFailures: 5 });
const commandCheck = (value: string, grace = 120) => ({ protocol: 'COMMAND', command: { value }, gracePeriodSeconds: grace, intervalSeconds: 60, timeoutSeconds: 20, maxConsecutiveFailures: 5 });

const kafkaVip = 'orrery-kafka';
const brokersOf = (v: Values): string[] => v.kafka.brokers ?? [`${vipHost(kafkaVip)}:9092`];

function platformGroup(v: Values): MarathonGroup {
  const base = `${ROOT_GROUP}/platform`;
  const apps: MarathonApp[] = [];
  const labels = (component: string) => ({ 'orrery.dev/component': component, 'orrery.dev/part-of': 'orrery' });
  if (!v.kafka.brokers) {
    apps.push(
      app(`${base}/kafka`, {
        image: v.images.kafka,
        r: v.kafka.resources,
        instances: 1,
        env: singleNodeKafkaEnv(`${vipHost(kafkaVip)}:9092`),
        ports: [port('kafka', 9092, kafkaVip)],
        volumes: persistent('kafka-data', v.kafka.storage, '/var/lib/kafka/data'),
        health: [tcpCheck(120)],
        labels: labels('kafka'),
        stateful: true,
      }),
    );
  }
  const services = ORRERY_SERVICES.filter((s): s is Exclude<OrreryService, 'gitops'> => s !== 'gitops');
  for (const s of services) {
    const settings = s === 'ingest' ? { r: v.orrery.ingest.resources, instances: v.orrery.ingest.autoscaling.minReplicas } : { r: v.orrery[s].resources, instances: v.orrery[s].replicas };
    apps.push(
      app(`${base}/${s}`, {
        image: orreryImage(v, s),
        ...settings,
        args: ['start', s],
        env: {
          ORRERY_CONFIG: CONFIG_PATH,
          ORRERY_DATA_DIR: '/var/lib/orrery',
          PORT: String(ORRERY_PORT),
          DATABASE_URL: { secret: 'orrery/database-url' },
          REDIS_URL: { secret: 'orrery/redis-url' },
        },
        ports: [port('http', ORRERY_PORT, `orrery-${s}`)],
        volumes: [{ containerPath: CONFIG_PATH, secret: 'orrery-config' }],
        health: [httpCheck('/healthz')],
        dependencies: v.kafka.brokers ? [] : [`${base}/kafka`],
        labels: labels(s),
      }),
    );
  }
  // The config file's secret is declared on each app that mounts it.
  for (const a of apps) if (a.container.volumes?.some((vol) => vol.secret === 'orrery-config')) a.secrets = { ...a.secrets, 'orrery-config': { source: 'orrery/config' } };
  return { id: base, apps };
}

function airflowGroup(v: Values, d: AirflowDeployment): MarathonGroup {
  const base = `${ROOT_GROUP}/${d.name}`;
  const vip = (component: string) => `orrery-${d.name}-${component}`;
  const secret = (key: (typeof MARATHON_AIRFLOW_SECRETS)[number]) => ({ secret: `orrery/${d.name}/${key}` });
  const labels = (component: string) => ({ 'orrery.dev/airflow-deployment': d.name, 'orrery.dev/component': component, 'orrery.dev/part-of': 'orrery' });
  const image = `${airflowRepository(v, d)}:${d.image.tag}`;

  const settings = airflowSettings(d, vipHost(vip('api-server')));
  settings.metrics = { ...settings.metrics, statsd_host: vipHost(vip('statsd')) };
  const airflowEnv: Env = {};
  for (const [section, kv] of Object.entries(settings)) for (const [k, val] of Object.entries(kv)) airflowEnv[`AIRFLOW__${section.toUpperCase()}__${k.toUpperCase()}`] = String(val);
  Object.assign(airflowEnv, {
    AIRFLOW__CORE__FERNET_KEY: secret('fernet-key'),
    AIRFLOW__API__SECRET_KEY: secret('api-secret-key'),
    AIRFLOW__API_AUTH__JWT_SECRET: secret('jwt-secret'),
    // Whole URLs: Marathon has no `$(VAR)` expansion to build them from passwords.
    AIRFLOW__CELERY__BROKER_URL: secret('broker-url'),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: secret('sql-alchemy-conn'),
    AIRFLOW__CELERY__RESULT_BACKEND: secret('result-backend'),
  });
  const backing = [`${base}/redis`, ...(d.postgres.external ? [] : [`${base}/postgres`])];
  // cmd runs under /bin/sh; each component waits for the schema the scheduler migrates.
  const waitThen = (what: string) => `airflow db check-migrations --migration-wait-timeout=300 && exec airflow ${what}`;
  const jobCheck = (job: string) => commandCheck(`CONNECTION_CHECK_MAX_COUNT=0 AIRFLOW__LOGGING__LOGGING_LEVEL=ERROR airflow jobs check --job-type ${job} --local`);
  const airflow = (component: string, o: Omit<Parameters<typeof app>[1], 'image' | 'labels' | 'dependencies'>) =>
    app(`${base}/${component}`, { image, labels: labels(component), dependencies: backing, ...o, env: { ...airflowEnv, ...o.env } });

  const apps: MarathonApp[] = [
    app(`${base}/redis`, {
      image: v.images.redis,
      r: d.redis.resources,
      instances: 1,
      cmd: 'exec redis-server --requirepass "$REDIS_PASSWORD"',
      env: { REDIS_PASSWORD: secret('redis-password') },
      ports: [port('redis', 6379, vip('redis'))],
      health: [commandCheck('redis-cli -a "$REDIS_PASSWORD" --no-auth-warning ping | grep -q PONG', 60)],
      labels: labels('redis'),
    }),
  ];
  if (!d.postgres.external) {
    apps.push(
      app(`${base}/postgres`, {
        image: v.images.postgres,
        r: d.postgres.resources,
        instances: 1,
        env: { POSTGRES_USER: 'airflow', POSTGRES_DB: 'airflow', POSTGRES_PASSWORD: secret('postgres-password'), PGDATA: '/var/lib/postgresql/data/pgdata' },
        ports: [port('postgres', 5432, vip('postgres'))],
        volumes: persistent('postgres-data', d.postgres.storage, '/var/lib/postgresql/data'),
        health: [commandCheck('pg_isready -U airflow -d airflow -h 127.0.0.1', 60)],
        labels: labels('postgres'),
        stateful: true,
      }),
    );
  }
  apps.push(
    airflow('api-server', {
      r: d.apiServer.resources,
      instances: d.apiServer.replicas,
      cmd: waitThen('api-server'),
      ports: [port('http', API_PORT, vip('api-server'))],
      health: [httpCheck('/api/v2/monitor/health', 300)],
    }),
    // The scheduler migrates the schema first, as its init container does on Kubernetes.
    airflow('scheduler', { r: d.scheduler.resources, instances: d.scheduler.replicas, cmd: 'airflow db migrate && exec airflow scheduler', health: [jobCheck('SchedulerJob')] }),
    airflow('dag-processor', { r: d.dagProcessor.resources, instances: d.dagProcessor.replicas, cmd: waitThen('dag-processor'), health: [jobCheck('DagProcessorJob')] }),
    airflow('worker', {
      r: d.workers.resources,
      instances: d.workers.replicas,
      cmd: waitThen('celery worker'),
      ports: [port('worker-logs', 8793)],
      volumes: persistent('logs', d.workers.logs.size, LOGS),
      health: [commandCheck('CONNECTION_CHECK_MAX_COUNT=0 python -m celery --app airflow.providers.celery.executors.celery_executor.app inspect ping -d celery@$(hostname)')],
      stateful: true,
      killGraceSeconds: d.workers.terminationGracePeriodSeconds,
    }),
  );
  if (d.flower.enabled) {
    apps.push(airflow('flower', { r: d.flower.resources, instances: 1, cmd: waitThen('celery flower'), ports: [port('flower', 5555, vip('flower'))], health: [tcpCheck()] }));
  }
  apps.push(
    app(`${base}/statsd`, {
      image: v.images.statsdExporter,
      r: d.statsd.resources,
      instances: 1,
      args: ['--statsd.listen-udp=:9125', '--web.listen-address=:9102'],
      ports: [port('statsd-scrape', 9102, vip('statsd')), port('statsd-ingest', 9125, vip('statsd'), 'udp')],
      health: [httpCheck('/metrics')],
      labels: labels('statsd'),
    }),
  );
  return { id: base, apps };
}

/**
 * Renders the Marathon group of an installation, and Orrery's config file for the secret
 * store. Pure and deterministic.
 *
 * @example const { files } = renderMarathon(values); files.get('marathon.json')
 */
export function renderMarathon(v: Values): MarathonOutput {
  const root: MarathonGroup = { id: ROOT_GROUP, groups: [platformGroup(v), ...v.deployments.map((d) => airflowGroup(v, d))] };
  const config = orreryConfig(v);
  const orreryFile = { ...config, kafka: { ...(config.kafka as object), brokers: brokersOf(v) } };
  delete (orreryFile as Record<string, unknown>).gitops; // the GitOps controller belongs to the Kubernetes edition
  return {
    files: new Map([
      ['marathon.json', `${JSON.stringify(root, null, 2)}\n`],
      ['orrery.yaml', toYaml(orreryFile)],
    ]),
  };
}
