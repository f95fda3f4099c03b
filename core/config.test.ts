import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';
import { activeGitops } from './gitops-config.ts';

const files = (map: Record<string, string>) => (path: string) => {
  const text = map[path];
  if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
  return text;
};

describe('loadConfig', () => {
  it('gives defaults with nothing set', () => {
    const config = loadConfig({ env: {} });
    expect(config.http.port).toBe(8080);
    expect(config.log.level).toBe('info');
    expect(config.kafka.brokers).toBeUndefined();
    expect(config.kafka.topics).toEqual({ partitions: 6, replicationFactor: 1 });
    expect(config.kafka.client).toBe('platformatic');
  });

  it('reads the Kafka client from KAFKA_CLIENT, and refuses one it does not know', () => {
    expect(loadConfig({ env: { KAFKA_CLIENT: 'platformatic' } }).kafka.client).toBe('platformatic');
    expect(() => loadConfig({ env: { KAFKA_CLIENT: 'rdkafka' } })).toThrow(ConfigError);
  });

  it('reads env, splitting lists and coercing numbers', () => {
    const config = loadConfig({
      env: { KAFKA_BROKERS: '127.0.0.1:9092, 127.0.0.1:9093', PORT: '9000', DATABASE_URL: 'postgres://u:p@h:5432/db' },
    });
    expect(config.kafka.brokers).toEqual(['127.0.0.1:9092', '127.0.0.1:9093']);
    expect(config.http.port).toBe(9000);
    expect(config.database.url).toBe('postgres://u:p@h:5432/db');
  });

  it('reads the YAML file from ORRERY_CONFIG, and env wins over it', () => {
    const readFile = files({ '/etc/orrery.yaml': 'http:\n  port: 7000\nlog:\n  level: debug\n' });
    const config = loadConfig({ env: { ORRERY_CONFIG: '/etc/orrery.yaml', PORT: '7100' }, readFile });
    expect(config.http.port).toBe(7100);
    expect(config.log.level).toBe('debug');
  });

  it('an explicit --config path wins over ORRERY_CONFIG', () => {
    const readFile = files({ '/a.yaml': 'http: {port: 1}', '/b.yaml': 'http: {port: 2}' });
    expect(loadConfig({ env: { ORRERY_CONFIG: '/a.yaml' }, configPath: '/b.yaml', readFile }).http.port).toBe(2);
  });

  it('names the bad field and where it came from', () => {
    const readFile = files({ '/c.yaml': 'kafka:\n  brokers: [nohostport]\nhttp:\n  prot: 1\n' });
    let err: unknown;
    try {
      loadConfig({ env: { PORT: 'eighty', ORRERY_CONFIG: '/c.yaml' }, readFile });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toMatch(/kafka\.brokers\.0 \(from \/c\.yaml\): expected host:port/);
    expect(message).toMatch(/http\.port \(from env PORT\)/);
    expect(message).toMatch(/unknown key\(s\) prot/);
  });

  it('reports unreadable and malformed files with their path', () => {
    expect(() => loadConfig({ configPath: '/missing.yaml', readFile: files({}) })).toThrow(/Cannot read config file \/missing\.yaml/);
    expect(() => loadConfig({ configPath: '/bad.yaml', readFile: files({ '/bad.yaml': 'a: [1,\n' }) })).toThrow(
      /\/bad\.yaml:\d+:\d+ is not valid YAML/,
    );
    expect(() => loadConfig({ configPath: '/list.yaml', readFile: files({ '/list.yaml': '- 1\n' }) })).toThrow(/YAML mapping/);
  });

  it('rejects URLs of the wrong kind', () => {
    expect(() => loadConfig({ env: { DATABASE_URL: 'mysql://x/y' } })).toThrow(/database\.url \(from env DATABASE_URL\): expected a postgres/);
  });

  it('is frozen', () => {
    const config = loadConfig({ env: {} });
    expect(Object.isFrozen(config.http)).toBe(true);
    expect(() => {
      (config.http as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe('examples/orrery.yaml', () => {
  it('is a valid config', () => {
    const path = new URL('../examples/orrery.yaml', import.meta.url).pathname;
    const config = loadConfig({ configPath: path, env: {} });
    expect(config.sources.map((s) => s.id)).toEqual(['website', 'backend']);
    expect(config.kafka.brokers).toEqual(['127.0.0.1:9092']);
  });
});

describe('sources', () => {
  it('take the minimum shape users write: id and writeKeys', () => {
    const readFile = files({ '/m.yaml': 'sources:\n  - id: web\n    writeKeys: [demo-write-key]\n' });
    expect(loadConfig({ configPath: '/m.yaml', readFile }).sources[0]).toMatchObject({ id: 'web', writeKeys: ['demo-write-key'], enabled: true });
  });

  it('need at least one key, and unique ids', () => {
    const readFile = files({
      '/s.yaml': `sources:\n  - id: a\n  - id: b\n    writeKeys: [wk_12345678]\n  - id: b\n    writeKeyHashes: ["sha256:${'0'.repeat(64)}"]\n`,
    });
    expect(() => loadConfig({ configPath: '/s.yaml', readFile })).toThrow(/sources\.0.*at least one write key[\s\S]*sources\.2\.id.*duplicate source id "b"/);
  });
});

describe('destinations and routes', () => {
  it('take the minimum shape from the router issue, with type-specific fields at the top level', () => {
    const readFile = files({
      '/r.yaml': `sources:
  - id: web
    writeKeys: [demo-write-key]
destinations:
  - id: hook
    type: webhook
    url: http://127.0.0.1:9999/collect
routes:
  - source: web
    destination: hook
    filter: { types: [track, page] }
`,
    });
    const config = loadConfig({ configPath: '/r.yaml', readFile });
    expect(config.destinations[0]).toMatchObject({ id: 'hook', type: 'webhook', url: 'http://127.0.0.1:9999/collect', enabled: true });
    expect(config.routes[0]).toMatchObject({ source: 'web', destination: 'hook', filter: { types: ['track', 'page'] }, transforms: [] });
  });

  it('refuses routes to unknown sources or destinations, and bad conditions', () => {
    const readFile = files({
      '/r.yaml': `sources: [{id: web, writeKeys: [demo-write-key]}]
destinations: [{id: hook, type: webhook}]
routes:
  - {source: app, destination: hook}
  - {source: web, destination: nowhere}
`,
    });
    expect(() => loadConfig({ configPath: '/r.yaml', readFile })).toThrow(/routes\.0\.source.*no source "app"[\s\S]*routes\.1\.destination.*no destination "nowhere"/);
    const bad = files({ '/b.yaml': `routes: [{source: a, destination: b, filter: {where: [{field: x, op: matches, value: "("}]}}]\n` });
    expect(() => loadConfig({ configPath: '/b.yaml', readFile: bad })).toThrow(/not a valid regular expression/);
  });
});

describe('env interpolation in the file', () => {
  it('replaces ${NAME} from env, keeps $${NAME} literal, and names the field when a variable is missing', () => {
    const readFile = files({
      '/g.yaml': `gitops:
  repo: { url: "http://127.0.0.1:8174/manifests.git", token: "\${GIT_TOKEN}" }
  receivers:
    distribution: { token: \${REGISTRY_TOKEN} }
  commitMessage: "deploy $\${NOT_A_VAR}"
  policies:
    - { name: airflow, image: registry.example.com/airflow, tags: { semver: ">=1.0.0" }, mode: commit }
`,
    });
    const config = loadConfig({ configPath: '/g.yaml', readFile, env: { GIT_TOKEN: 'ghp_x', REGISTRY_TOKEN: 'r1' } });
    expect(activeGitops(config.gitops)?.repo).toMatchObject({ token: 'ghp_x', branch: 'main' });
    expect(activeGitops(config.gitops)?.receivers.distribution).toEqual({ token: 'r1' });
    expect(activeGitops(config.gitops)?.commitMessage).toBe('deploy ${NOT_A_VAR}');
    expect(activeGitops(config.gitops)?.policies[0]).toMatchObject({ name: 'airflow', tags: { semver: '>=1.0.0' }, mode: 'commit', pinDigest: false });
    expect(() => loadConfig({ configPath: '/g.yaml', readFile, env: { GIT_TOKEN: 'x' } })).toThrow(/gitops\.receivers\.distribution\.token \(from \/g\.yaml\): environment variable REGISTRY_TOKEN is not set/);
  });
});

describe('KUBECONFIG', () => {
  it('applies to the gitops sync only when the file has a gitops section', () => {
    expect(loadConfig({ env: { KUBECONFIG: '/k' } }).gitops).toBeUndefined();
    const readFile = files({ '/k.yaml': 'gitops: { repo: { url: /tmp/x } }\n' });
    expect(activeGitops(loadConfig({ configPath: '/k.yaml', readFile, env: { KUBECONFIG: '/k' } }).gitops)?.sync.kubeconfig).toBe('/k');
  });

  it('leaves a switched-off section off, and the rest of it is ignored', () => {
    const readFile = files({ '/off.yaml': 'gitops: { enabled: false }\n', '/off2.yaml': 'gitops: { enabled: false, repo: { url: /tmp/x } }\n', '/on.yaml': 'gitops: { enabled: true, repo: { url: /tmp/x } }\n' });
    expect(loadConfig({ configPath: '/off.yaml', readFile, env: { KUBECONFIG: '/k' } }).gitops).toEqual({ enabled: false });
    expect(loadConfig({ configPath: '/off2.yaml', readFile }).gitops).toEqual({ enabled: false });
    expect(activeGitops(loadConfig({ configPath: '/on.yaml', readFile }).gitops)?.repo.url).toBe('/tmp/x');
    expect(() => loadConfig({ configPath: '/on.yaml', readFile: files({ '/on.yaml': 'gitops: { repo: {} }\n' }) })).toThrow(/gitops\.repo\.url \(from \/on\.yaml\)/);
  });
});
