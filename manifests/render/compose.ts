import { parseQuantity } from '../quantity.ts';
import { airflowRepository, logCapBytes, type AirflowDeployment, type Resources, type Values } from '../values.ts';
import { airflowSettings, LOGROTATE_SCRIPT, LOGS } from './airflow.ts';
import { airflowPolicy, orreryImage, orreryPolicy, type OrreryService } from './policies.ts';
import { orreryConfig, singleNodeKafkaEnv } from './orrery.ts';
import { markImage, toYaml } from './yaml.ts';

/**
 * The open edition on one machine: Orrery's ingest, router and sinks, one Airflow
 * deployment (api-server, scheduler, DAG processor, Celery workers, log rotation), and
 * Kafka, Postgres and Redis, as one compose file. Replicas, resources and restart policy
 * are under `deploy:`, which `docker compose up` honours and `docker stack deploy` (Swarm)
 * requires, so the same file runs on both; `version: "3.8"` keeps it inside the schema
 * that `docker stack deploy` validates against.
 *
 * Secrets are `${VAR:?…}` references filled in from the environment (or a `.env` file
 * beside it) when the file is deployed; no secret is in the file. Images carry the same
 * policy markers as the Kubernetes manifests, so the GitOps controller updates them too.
 */

export interface ComposeOutput {
  /** file name → text: `docker-compose.yml` and the config files it references. */
  files: Map<string, string>;
}

/** Environment variables the compose file needs at deploy time. */
export const COMPOSE_ENV = ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'AIRFLOW_FERNET_KEY', 'AIRFLOW_API_SECRET_KEY', 'AIRFLOW_JWT_SECRET'] as const;
const need = (name: (typeof COMPOSE_ENV)[number]) => `\${${name}:?set ${name} (see manifests/README.md)}`;

/** docker's byte units: binary, lower-case (`2g`, `512m`). */
function composeMemory(q: string): string {
  const bytes = parseQuantity(q);
  for (const [unit, f] of [['g', 2 ** 30], ['m', 2 ** 20], ['k', 2 ** 10]] as const) if (bytes >= f && bytes % f === 0) return `${bytes / f}${unit}`;
  return String(Math.ceil(bytes));
}

/** docker's cpus: a decimal number as a string (`"0.5"`). */
const composeCpus = (q: string): string => String(Number(parseQuantity(q).toFixed(3)));

function deploy(replicas: number, r: Resources, restart: 'any' | 'none' = 'any'): Record<string, unknown> {
  const limits: Record<string, string> = {};
  const reservations: Record<string, string> = {};
  if (r.limits?.cpu) limits.cpus = composeCpus(r.limits.cpu);
  if (r.limits?.memory) limits.memory = composeMemory(r.limits.memory);
  if (r.requests?.cpu) reservations.cpus = composeCpus(r.requests.cpu);
  if (r.requests?.memory) reservations.memory = composeMemory(r.requests.memory);
  return {
    replicas,
    resources: { ...(Object.keys(limits).length ? { limits } : {}), ...(Object.keys(reservations).length ? { reservations } : {}) },
    restart_policy: restart === 'none' ? { condition: 'none' } : { condition: 'any', delay: '5s' },
  };
}

/** Picks the deployment for the compose file: by name, or the first one. */
export function composeDeployment(v: Values, name?: string): AirflowDeployment {
  const d = name ? v.deployments.find((x) => x.name === name) : v.deployments[0];
  if (!d) throw new Error(`no Airflow deployment named "${name}" in the values (have: ${v.deployments.map((x) => x.name).join(', ')})`);
  return d;
}

/**
 * Renders the compose file for one Airflow deployment (default: the first).
 *
 * @example const { files } = renderCompose(values); files.get('docker-compose.yml')
 */
export function renderCompose(v: Values, opts: { deployment?: string } = {}): ComposeOutput {
  const d = composeDeployment(v, opts.deployment);
  const brokers = v.kafka.brokers ?? ['kafka:9092'];
  const dbUrl = `postgres://airflow:${need('POSTGRES_PASSWORD')}@postgres:5432/airflow`;
  const services: Record<string, Record<string, unknown>> = {};

  if (!v.kafka.brokers) {
    services.kafka = {
      image: v.images.kafka,
      environment: singleNodeKafkaEnv('kafka:9092'),
      volumes: ['kafka-data:/var/lib/kafka/data'],
      deploy: deploy(1, v.kafka.resources),
    };
  }
  // One Postgres for both halves: Airflow's metadata in the public schema, Orrery's tables
  // in the `orrery` schema (database.schema) of the same database.
  services.postgres = {
    image: v.images.postgres,
    environment: { POSTGRES_USER: 'airflow', POSTGRES_DB: 'airflow', POSTGRES_PASSWORD: need('POSTGRES_PASSWORD'), PGDATA: '/var/lib/postgresql/data/pgdata' },
    volumes: ['postgres-data:/var/lib/postgresql/data'],
    healthcheck: { test: ['CMD', 'pg_isready', '-U', 'airflow', '-d', 'airflow'], interval: '10s', timeout: '5s', retries: 5 },
    deploy: deploy(1, d.postgres.resources),
  };
  // One Redis: Celery's broker in db 0, Orrery's dedup and rate limits in db 1.
  services.redis = {
    image: v.images.redis,
    command: ['redis-server', '--requirepass', need('REDIS_PASSWORD')],
    deploy: deploy(1, d.redis.resources),
  };

  const orrery = (s: OrreryService, replicas: number, r: Resources, extra: Record<string, unknown> = {}) =>
    markImage(
      {
        image: orreryImage(v, s),
        command: ['start', s],
        environment: {
          ORRERY_CONFIG: '/etc/orrery/orrery.yaml',
          ORRERY_DATA_DIR: '/var/lib/orrery',
          DATABASE_URL: dbUrl,
          REDIS_URL: `redis://:${need('REDIS_PASSWORD')}@redis:6379/1`,
        },
        configs: [{ source: 'orrery-config', target: '/etc/orrery/orrery.yaml' }],
        depends_on: ['postgres', 'redis', ...(v.kafka.brokers ? [] : ['kafka'])],
        deploy: deploy(replicas, r),
        ...extra,
      },
      orreryPolicy(s),
    );
  // One ingest publishing 8080: with `docker compose up`, two replicas cannot both bind the
  // host port (Swarm's routing mesh could; scale there with `docker service scale`).
  services['orrery-ingest'] = orrery('ingest', 1, v.orrery.ingest.resources, { ports: ['8080:8080'], volumes: ['ingest-spool:/var/lib/orrery'] });
  services['orrery-router'] = orrery('router', v.orrery.router.replicas, v.orrery.router.resources);
  services['orrery-sinks'] = orrery('sinks', v.orrery.sinks.replicas, v.orrery.sinks.resources);

  const settings = airflowSettings(d, 'airflow-api-server');
  settings.metrics = { ...settings.metrics, statsd_on: 'False' }; // no exporter on one machine
  const airflowEnv: Record<string, string> = {};
  for (const [section, kv] of Object.entries(settings)) for (const [k, val] of Object.entries(kv)) airflowEnv[`AIRFLOW__${section.toUpperCase()}__${k.toUpperCase()}`] = String(val);
  Object.assign(airflowEnv, {
    AIRFLOW__CORE__FERNET_KEY: need('AIRFLOW_FERNET_KEY'),
    AIRFLOW__API__SECRET_KEY: need('AIRFLOW_API_SECRET_KEY'),
    AIRFLOW__API_AUTH__JWT_SECRET: need('AIRFLOW_JWT_SECRET'),
    AIRFLOW__CELERY__BROKER_URL: `redis://:${need('REDIS_PASSWORD')}@redis:6379/0`,
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: `postgresql://airflow:${need('POSTGRES_PASSWORD')}@postgres:5432/airflow`,
    AIRFLOW__CELERY__RESULT_BACKEND: `db+postgresql://airflow:${need('POSTGRES_PASSWORD')}@postgres:5432/airflow`,
  });
  const image = `${airflowRepository(v, d)}:${d.image.tag}`;
  // depends_on is ignored by Swarm, so each component waits for the schema itself.
  const waitThen = (cmd: string) => ['bash', '-c', `airflow db check-migrations --migration-wait-timeout=300 && exec airflow ${cmd}`];
  const airflow = (command: string[], replicas: number, r: Resources, extra: Record<string, unknown> = {}, restart: 'any' | 'none' = 'any') =>
    markImage({ image, command, environment: airflowEnv, depends_on: ['postgres', 'redis'], deploy: deploy(replicas, r, restart), ...extra }, airflowPolicy(d));
  // The task logs are one volume shared by workers and api-server: the api-server reads a
  // finished task's log from the file, with no need to reach the worker by hostname.
  const logs = [`airflow-logs:${LOGS}`];
  services['airflow-init'] = airflow(['bash', '-c', 'exec airflow db migrate'], 1, d.scheduler.resources, {}, 'none');
  services['airflow-api-server'] = airflow(waitThen('api-server'), d.apiServer.replicas, d.apiServer.resources, { ports: ['8081:8080'], volumes: logs });
  services['airflow-scheduler'] = airflow(waitThen('scheduler'), d.scheduler.replicas, d.scheduler.resources, { volumes: logs });
  services['airflow-dag-processor'] = airflow(waitThen('dag-processor'), d.dagProcessor.replicas, d.dagProcessor.resources, { volumes: logs });
  services['airflow-worker'] = airflow(waitThen('celery worker'), d.workers.replicas, d.workers.resources, {
    environment: { ...airflowEnv, DUMB_INIT_SETSID: '0' },
    volumes: logs,
    stop_grace_period: `${d.workers.terminationGracePeriodSeconds}s`,
  });
  const r = d.logRotation;
  services['airflow-logrotate'] = {
    image: v.images.logrotate,
    command: ['node', '/opt/logrotate/logrotate.mts', '--dir', LOGS, '--max-age-hours', String(r.maxAgeHours), '--max-total-bytes', String(logCapBytes(d)), '--active-seconds', String(r.activeSeconds), '--interval-seconds', String(r.intervalSeconds)],
    user: '50000:0',
    volumes: logs,
    configs: [{ source: 'logrotate', target: '/opt/logrotate/logrotate.mts' }],
    deploy: deploy(1, r.resources),
  };

  const config = orreryConfig(v);
  const orreryFile = { ...config, kafka: { ...(config.kafka as object), brokers }, database: { ...(config.database as object), schema: (config.database as { schema?: string } | undefined)?.schema ?? 'orrery' } };
  delete (orreryFile as Record<string, unknown>).gitops; // the GitOps controller belongs to the Kubernetes edition

  const compose = {
    version: '3.8',
    services,
    volumes: Object.fromEntries([...(v.kafka.brokers ? [] : ['kafka-data']), 'postgres-data', 'airflow-logs', 'ingest-spool'].sort().map((n) => [n, {}])),
    configs: { 'orrery-config': { file: './orrery.yaml' }, logrotate: { file: './logrotate.mts' } },
  };
  return {
    files: new Map([
      ['docker-compose.yml', toYaml(compose)],
      ['orrery.yaml', toYaml(orreryFile)],
      ['logrotate.mts', LOGROTATE_SCRIPT],
    ]),
  };
}
