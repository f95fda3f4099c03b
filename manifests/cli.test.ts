import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import { RENDER_OPTIONS } from './cli-help.ts';
import { renderCommand, renderToFiles } from './cli.ts';

const VALUES = fileURLToPath(new URL('./testdata/two-teams/values.yaml', import.meta.url));
let dir: string;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'orrery-render-')), 'rendered');
});
afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) } };
}

describe('renderToFiles', () => {
  it('writes one file per namespace and component, and only what changed on a re-render', async () => {
    const first = await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'kubernetes' });
    expect(first.changed.length).toBe(first.files.size);
    expect(existsSync(join(dir, 'airflow-marketing', 'worker.yaml'))).toBe(true);
    expect(existsSync(join(dir, 'finance-airflow', 'prometheus.yaml'))).toBe(true);
    expect(existsSync(join(dir, 'orrery', 'ingest.yaml'))).toBe(true);
    // The controller's own RBAC stays out of the tree it syncs (it could not apply it).
    expect(existsSync(join(dir, 'bootstrap'))).toBe(false);
    expect(existsSync(join(dir, '..', 'bootstrap', 'orrery-gitops-rbac.yaml'))).toBe(true);
    const mtime = statSync(join(dir, 'orrery', 'ingest.yaml')).mtimeMs;
    const second = await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'kubernetes' });
    expect(second.changed).toEqual([]);
    expect(statSync(join(dir, 'orrery', 'ingest.yaml')).mtimeMs).toBe(mtime);
  });

  it('writes the bootstrap RBAC where it is told to', async () => {
    await renderToFiles({ valuesPath: VALUES, outDir: dir, bootstrapDir: join(dir, '..', 'admin'), target: 'kubernetes' });
    expect(existsSync(join(dir, '..', 'admin', 'orrery-gitops-rbac.yaml'))).toBe(true);
  });

  it('prunes only .yaml files the render no longer produces, and check reports without writing', async () => {
    await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'kubernetes' });
    mkdirSync(join(dir, 'airflow-gone'));
    writeFileSync(join(dir, 'airflow-gone', 'worker.yaml'), 'old');
    writeFileSync(join(dir, 'README.md'), 'keep me');
    writeFileSync(join(dir, 'orrery', 'ingest.yaml'), 'edited by hand');
    const check = await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'kubernetes', check: true });
    expect(check).toMatchObject({ changed: ['orrery/ingest.yaml'], stale: ['airflow-gone/worker.yaml'] });
    expect(readFileSync(join(dir, 'orrery', 'ingest.yaml'), 'utf8')).toBe('edited by hand');
    await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'kubernetes', prune: true });
    expect(existsSync(join(dir, 'airflow-gone', 'worker.yaml'))).toBe(false);
    expect(existsSync(join(dir, 'README.md'))).toBe(true);
    expect(readFileSync(join(dir, 'orrery', 'ingest.yaml'), 'utf8')).not.toBe('edited by hand');
  });

  it('without outDir gives one multi-document stream, Namespaces first', async () => {
    const { stdout, files } = await renderToFiles({ valuesPath: VALUES, target: 'kubernetes' });
    const docs = parseAllDocuments(stdout!) as unknown as Array<{ toJS(): { kind: string } }>;
    const kinds = docs.map((d) => d.toJS().kind);
    expect(kinds.slice(0, 3)).toEqual(['Namespace', 'Namespace', 'Namespace']);
    expect(kinds.lastIndexOf('Namespace')).toBe(2);
    expect(docs.length).toBe([...files.values()].reduce((n, t) => n + t.split('\n---\n').length, 0));
  });

  it('renders the compose target with its config files', async () => {
    const r = await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'compose', deployment: 'finance' });
    expect([...r.files.keys()].sort()).toEqual(['docker-compose.yml', 'logrotate.mts', 'orrery.yaml']);
    const compose = readFileSync(join(dir, 'docker-compose.yml'), 'utf8');
    expect(compose).toContain('image: registry.example.com/finance/airflow:1.0.7 # {"$imagepolicy": "finance-airflow"}');
    expect(compose).not.toContain('marketing');
  });

  it('renders the marathon target: one group for every deployment, and the config for the secret store', async () => {
    const r = await renderToFiles({ valuesPath: VALUES, outDir: dir, target: 'marathon' });
    expect([...r.files.keys()].sort()).toEqual(['marathon.json', 'orrery.yaml']);
    const group = JSON.parse(readFileSync(join(dir, 'marathon.json'), 'utf8')) as { id: string; groups: Array<{ id: string }> };
    expect(group.id).toBe('/orrery');
    expect(group.groups.map((g) => g.id)).toEqual(['/orrery/platform', '/orrery/marketing', '/orrery/finance']);
    const { stdout } = await renderToFiles({ valuesPath: VALUES, target: 'marathon' });
    expect(stdout).toBe(r.files.get('marathon.json'));
  });
});

describe('renderCommand', () => {
  it('prints the stream without --out', async () => {
    const t = io();
    expect(await renderCommand([VALUES], {}, t.io)).toBe(0);
    expect(t.out.join('')).toContain('kind: StatefulSet');
  });

  it('takes the values file as --values too, the same bytes as the argument; not both', async () => {
    const a = io();
    const b = io();
    expect(await renderCommand([], { values: VALUES }, a.io)).toBe(0);
    expect(await renderCommand([VALUES], {}, b.io)).toBe(0);
    expect(a.out.join('')).toBe(b.out.join(''));
    await expect(renderCommand([VALUES], { values: VALUES }, io().io)).rejects.toThrow(/usage/);
  });

  it('--check exits 1 on a stale render and says how to fix it', async () => {
    const t = io();
    expect(await renderCommand([VALUES], { out: dir, check: true }, t.io)).toBe(1);
    expect(t.err.join('')).toContain('out of date: orrery/ingest.yaml');
    expect(t.err.join('')).toContain(`orrery render ${VALUES} --out ${dir}`);
    expect(await renderCommand([VALUES], { out: dir, prune: true }, io().io)).toBe(0);
    expect(await renderCommand([VALUES], { out: dir, check: true }, io().io)).toBe(0);
  });

  it.each([
    [[], {}, /usage: orrery render/],
    [[VALUES, 'extra'], {}, /usage/],
    [[VALUES], { target: 'helm' }, /--target: expected kubernetes, compose, marathon/],
    [[VALUES], { prune: true }, /need --out/],
    [[VALUES], { target: 'compose', deployment: 'nope' }, /no Airflow deployment named "nope"/],
    [['/nonexistent/values.yaml'], {}, /Cannot read values file/],
  ])('refuses %j %j with a ConfigError', async (args, flags, message) => {
    const p = renderCommand(args as string[], flags, io().io);
    await expect(p).rejects.toBeInstanceOf(ConfigError);
    await expect(p).rejects.toThrow(message);
  });

  it('declares its options for the CLI parser', () => {
    expect(Object.keys(RENDER_OPTIONS).sort()).toEqual(['bootstrap-out', 'check', 'deployment', 'out', 'prune', 'target', 'values']);
  });
});
