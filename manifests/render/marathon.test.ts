import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseValues, type Values } from '../values.ts';
import { renderMarathon, ROOT_GROUP, vipHost } from './marathon.ts';

/**
 * The Marathon target, checked without a Marathon: fields are the app API's (a list taken
 * from Marathon's RAML types), ids and dependencies resolve, apps reach each other through
 * VIPs some app declares, secrets are references only, and one team's new tag changes only
 * that team's group. The bytes are pinned by the golden cases.
 */
const TESTDATA = fileURLToPath(new URL('../testdata/', import.meta.url));
const raw = (c: string) => parseYaml(readFileSync(`${TESTDATA}${c}/values.yaml`, 'utf8')) as Record<string, unknown>;

type App = Record<string, unknown> & {
  id: string;
  env: Record<string, string | { secret: string }>;
  secrets?: Record<string, { source: string }>;
  dependencies?: string[];
  cmd?: string;
  args?: string[];
  cpus: number;
  mem: number;
  instances: number;
  container: { type: string; docker: { image: string }; portMappings: Array<{ containerPort: number; labels?: { VIP_0?: string } }>; volumes?: Array<Record<string, unknown>> };
  healthChecks: unknown[];
};
type Group = { id: string; apps?: App[]; groups?: Group[] };

const render = (v: Values) => {
  const files = renderMarathon(v).files;
  const root = JSON.parse(files.get('marathon.json')!) as Group;
  const apps = (root.groups ?? []).flatMap((g) => (g.apps ?? []).map((a) => ({ group: g.id, app: a })));
  return { files, root, apps };
};

/** Top-level fields of Marathon's App type (docs/rest-api/public/api/v2/types/app.raml, 1.5+). */
const APP_FIELDS = new Set([
  'id', 'acceptedResourceRoles', 'args', 'backoffFactor', 'backoffSeconds', 'cmd', 'constraints', 'container', 'cpus', 'dependencies', 'disk', 'env',
  'executor', 'fetch', 'healthChecks', 'instances', 'labels', 'maxLaunchDelaySeconds', 'mem', 'gpus', 'networks', 'portDefinitions', 'readinessChecks',
  'residency', 'requirePorts', 'secrets', 'taskKillGracePeriodSeconds', 'upgradeStrategy', 'user', 'killSelection', 'unreachableStrategy',
]);

describe('marathon target', () => {
  for (const c of ['default', 'external-services', 'two-teams']) {
    describe(c, () => {
      const v = parseValues(raw(c));
      const { root, apps, files } = render(v);

      it('is one root group, a group for the platform and one per Airflow deployment', () => {
        expect(root.id).toBe(ROOT_GROUP);
        expect(root.groups!.map((g) => g.id)).toEqual([`${ROOT_GROUP}/platform`, ...v.deployments.map((d) => `${ROOT_GROUP}/${d.name}`)]);
        for (const { group, app } of apps) expect(app.id.startsWith(`${group}/`), app.id).toBe(true);
        expect(new Set(apps.map((a) => a.app.id)).size).toBe(apps.length);
      });

      it("uses only the app API's fields, and at most one of cmd and args (none: the image's own command)", () => {
        for (const { app } of apps) {
          expect(Object.keys(app).filter((k) => !APP_FIELDS.has(k)), app.id).toEqual([]);
          expect([app.cmd, app.args].filter((x) => x !== undefined).length, app.id).toBeLessThanOrEqual(1);
          expect(app.container.type, app.id).toBe('MESOS');
          expect(app.cpus, app.id).toBeGreaterThanOrEqual(0.001);
          expect(app.mem, app.id).toBeGreaterThan(0);
          expect(app.healthChecks.length, app.id).toBeGreaterThan(0);
        }
      });

      it('every dependency is an app of the render, and nothing depends on itself', () => {
        const ids = new Set(apps.map((a) => a.app.id));
        for (const { app } of apps) for (const dep of app.dependencies ?? []) expect(ids.has(dep) && dep !== app.id, `${app.id} → ${dep}`).toBe(true);
      });

      it('every VIP address in env and in the config file is one an app declares', () => {
        const declared = new Set(apps.flatMap(({ app }) => app.container.portMappings.map((p) => p.labels?.VIP_0?.replace(/^\/([^:]+):(\d+)$/, (_, n: string, port: string) => `${vipHost(n)}:${port}`))));
        const text = [JSON.stringify(apps), files.get('orrery.yaml')!].join('\n');
        const used = new Set([...text.matchAll(/[a-z0-9-]+\.marathon\.l4lb\.thisdcos\.directory:\d+/g)].map((m) => m[0]));
        for (const u of used) expect(declared.has(u), u).toBe(true);
        // The workers reach the api-server's execution API through its VIP.
        for (const d of v.deployments) expect(used.has(`${vipHost(`orrery-${d.name}-api-server`)}:8080`), d.name).toBe(true);
      });

      it('holds no secret: secret env values are references declared in the same app', () => {
        for (const { app } of apps) {
          for (const [k, value] of Object.entries(app.env)) {
            if (typeof value === 'string') expect(value, `${app.id} ${k}`).not.toMatch(/:\/\/[^/\s]*:[^@/\s]+@/);
            else expect(app.secrets?.[value.secret], `${app.id} ${k}`).toBeDefined();
          }
          for (const vol of app.container.volumes ?? []) if (vol.secret) expect(app.secrets?.[vol.secret as string], app.id).toBeDefined();
        }
      });

      it('takes instances from the values', () => {
        const d = v.deployments[0]!;
        const worker = apps.find((a) => a.app.id === `${ROOT_GROUP}/${d.name}/worker`)!.app;
        expect(worker.instances).toBe(d.workers.replicas);
        const router = apps.find((a) => a.app.id === `${ROOT_GROUP}/platform/router`)!.app;
        expect(router.instances).toBe(v.orrery.router.replicas);
        expect(apps.some((a) => a.app.id.endsWith('/gitops')), 'the GitOps controller syncs Kubernetes: not rendered').toBe(false);
      });
    });
  }

  it('sizes: cpus from the request, mem (a hard limit in Marathon) from the limit in MiB, volumes in MB', () => {
    const { apps } = render(parseValues(raw('two-teams')));
    const worker = apps.find((a) => a.app.id === `${ROOT_GROUP}/marketing/worker`)!.app;
    // The schema's defaults: requests 500m / 2Gi, limit 4Gi; logs 20Gi.
    expect([worker.cpus, worker.mem]).toEqual([0.5, 4096]);
    expect(worker.container.volumes![0]).toMatchObject({ containerPath: 'logs', persistent: { size: 20480 } });
    expect(worker).toMatchObject({ taskKillGracePeriodSeconds: 600, upgradeStrategy: { minimumHealthCapacity: 0, maximumOverCapacity: 0 } });
    const ext = render(parseValues(raw('external-services'))).apps;
    const sinks = ext.find((a) => a.app.id === `${ROOT_GROUP}/platform/sinks`)!.app;
    expect([sinks.cpus, sinks.mem, sinks.container.docker.image]).toEqual([1, 1536, 'ghcr.io/acme/orrery-sinks-custom:1.2.1']);
  });

  it("one team's new tag changes only that team's group", () => {
    const base = raw('two-teams');
    const bumped = structuredClone(base) as { deployments: Array<{ name: string; image: { tag: string } }> };
    const [first] = bumped.deployments;
    first!.image.tag = '9.9.9';
    const before = render(parseValues(base)).root.groups!;
    const after = render(parseValues(bumped)).root.groups!;
    const changed = after.filter((g, i) => JSON.stringify(g) !== JSON.stringify(before[i])).map((g) => g.id);
    expect(changed).toEqual([`${ROOT_GROUP}/${first!.name}`]);
    const images = (after.find((g) => g.id === changed[0])!.apps ?? []).map((a) => a.container.docker.image).filter((i) => i.includes('9.9.9'));
    expect(images.length).toBeGreaterThanOrEqual(4);
  });

  it('the built-in Kafka is an app the services depend on; external brokers replace it', () => {
    const builtIn = render(parseValues(raw('default')));
    const ingest = builtIn.apps.find((a) => a.app.id === `${ROOT_GROUP}/platform/ingest`)!.app;
    expect(ingest.dependencies).toEqual([`${ROOT_GROUP}/platform/kafka`]);
    expect(parseYaml(builtIn.files.get('orrery.yaml')!)).toMatchObject({ kafka: { brokers: [`${vipHost('orrery-kafka')}:9092`] } });
    const external = render(parseValues(raw('external-services')));
    expect(external.apps.some((a) => a.app.id.endsWith('/kafka'))).toBe(false);
  });
});
