import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.ts';
import { parseQuantity } from './quantity.ts';
import { airflowRepository, loadValues, logCapBytes, namespaceOf, parseValues } from './values.ts';

const minimal = () => ({ registry: 'registry.example.com', orrery: { tag: '0.1.0' }, deployments: [{ name: 'team-a', image: { tag: '3.1.0' } }] });

/** The message of the ConfigError that parsing `raw` throws. */
function errorOf(raw: unknown): string {
  try {
    parseValues(raw, 'values.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the values to be refused');
}

describe('values', () => {
  it('fills defaults from a minimal file', () => {
    const v = parseValues(minimal());
    const d = v.deployments[0]!;
    expect(namespaceOf(d)).toBe('airflow-team-a');
    expect(airflowRepository(v, d)).toBe('registry.example.com/team-a/airflow');
    expect(d.workers).toMatchObject({ replicas: 2, concurrency: 16, logs: { size: '10Gi' } });
    expect(d.image.policy).toEqual({ tags: { newest: true }, mode: 'commit' });
    expect(d.secretName).toBe('airflow');
    expect(logCapBytes(d)).toBe(Math.floor(10 * 2 ** 30 * 0.8));
    expect(v.orrery).toMatchObject({ namespace: 'orrery', credentialsSecret: 'orrery-credentials', gitops: { enabled: true } });
    expect(v.prometheus.replicas).toBe(2);
    expect(v.kafka.brokers).toBeUndefined();
  });

  it.each([
    ['a deployment name that is not a DNS label', (r: any) => (r.deployments[0].name = 'Team_A'), 'deployments.0.name: a DNS label'],
    ['a missing image tag', (r: any) => delete r.deployments[0].image.tag, 'deployments.0.image.tag'],
    ['a bad tag', (r: any) => (r.deployments[0].image.tag = 'v1 beta'), 'deployments.0.image.tag: an image tag'],
    ['an unknown key', (r: any) => (r.deployments[0].workerz = {}), 'deployments.0: unknown key(s) workerz'],
    ['a bad quantity', (r: any) => (r.deployments[0].workers = { logs: { size: '10 GB' } }), 'deployments.0.workers.logs.size: a Kubernetes quantity'],
    ['a duplicate deployment', (r: any) => r.deployments.push({ name: 'team-a', namespace: 'other', image: { tag: '1' } }), 'deployments.1.name: "team-a" is also deployments.0.name'],
    ['a namespace used twice', (r: any) => r.deployments.push({ name: 'b', namespace: 'airflow-team-a', image: { tag: '1' } }), 'deployments.1.namespace: namespace "airflow-team-a" is also used by deployments.0'],
    ['a deployment in Orrery’s namespace', (r: any) => (r.deployments[0].namespace = 'orrery'), 'is also used by orrery.namespace'],
    ['a log cap above the volume', (r: any) => (r.deployments[0].logRotation = { maxTotalSize: '20Gi' }), 'deployments.0.logRotation.maxTotalSize: must be below workers.logs.size (10Gi)'],
    ['no deployments', (r: any) => (r.deployments = []), 'deployments: at least one Airflow deployment'],
    ['a missing registry', (r: any) => delete r.registry, 'registry:'],
    ['a bad broker', (r: any) => (r.kafka = { brokers: ['kafka'] }), 'kafka.brokers.0: expected host:port'],
    ['an HPA max below min', (r: any) => (r.orrery.ingest = { autoscaling: { minReplicas: 4, maxReplicas: 2 } }), 'orrery.ingest.autoscaling.maxReplicas: must be at least minReplicas'],
    ['a PDB that blocks every drain', (r: any) => (r.orrery.ingest = { minAvailable: 2 }), 'orrery.ingest.minAvailable: must be below autoscaling.minReplicas (2)'],
    ['a bad ingress host', (r: any) => (r.orrery.ingest = { ingress: { host: 'https://x' } }), 'orrery.ingest.ingress.host: a DNS name'],
    ['a bad tag filter', (r: any) => (r.deployments[0].image.policy = { tags: { semver: '' } }), 'deployments.0.image.policy.tags'],
    ["a bad value in Orrery's own config", (r: any) => (r.orrery.config = { http: { port: 'x' } }), 'orrery.config.http.port'],
    ["an unknown key in Orrery's own config", (r: any) => (r.orrery.config = { ingest: { spoool: {} } }), 'orrery.config.ingest: unknown key(s) spoool'],
    ['brokers in the wrong place', (r: any) => (r.orrery.config = { kafka: { brokers: ['a:1'] } }), 'orrery.config.kafka.brokers: set kafka.brokers at the top level'],
  ])('refuses %s, naming the key', (_what, change, expected) => {
    const raw = minimal();
    change(raw);
    const message = errorOf(raw);
    expect(message).toContain('Invalid values in values.yaml');
    expect(message).toContain(expected);
  });

  it('lists every bad key at once', () => {
    const raw: any = minimal();
    raw.deployments[0].name = 'X';
    raw.prometheus = { replicas: 0 };
    const message = errorOf(raw);
    expect(message).toContain('deployments.0.name');
    expect(message).toContain('prometheus.replicas');
  });

  it('takes ${VAR} placeholders for secrets in Orrery’s config', () => {
    const raw: any = minimal();
    raw.orrery.config = { database: { url: '${DATABASE_URL}' }, gitops: { repo: { url: 'https://git.example.com/m.git', token: '${GIT_TOKEN}' } } };
    expect(() => parseValues(raw)).not.toThrow();
  });

  it('reads a file, naming the file and the line of a YAML error', () => {
    const files: Record<string, string> = { 'ok.yaml': 'registry: r.example.com\norrery: { tag: "1" }\ndeployments: [{ name: a, image: { tag: "1" } }]\n', 'bad.yaml': 'registry: [\n', 'list.yaml': '- a\n' };
    const read = (p: string) => {
      if (!(p in files)) throw new Error('ENOENT');
      return files[p]!;
    };
    expect(loadValues('ok.yaml', read).deployments[0]!.name).toBe('a');
    expect(() => loadValues('bad.yaml', read)).toThrow(/bad\.yaml:\d+:\d+ is not valid YAML/);
    expect(() => loadValues('list.yaml', read)).toThrow(/must hold a YAML mapping/);
    expect(() => loadValues('missing.yaml', read)).toThrow(/Cannot read values file missing\.yaml/);
  });
});

describe('quantities', () => {
  it.each([
    ['10Gi', 10 * 2 ** 30],
    ['512Mi', 512 * 2 ** 20],
    ['1.5G', 1.5e9],
    ['500m', 0.5],
    ['2', 2],
  ])('%s', (q, n) => expect(parseQuantity(q)).toBe(n));

  it('refuses what Kubernetes would', () => {
    expect(() => parseQuantity('10 GB')).toThrow(RangeError);
  });
});
