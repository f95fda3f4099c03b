import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { loadValues, parseValues } from '../values.ts';
import { LOGROTATE_SCRIPT } from './airflow.ts';
import { renderCompose } from './compose.ts';
import { kubernetesFiles, renderKubernetes } from './kubernetes.ts';
import { renderMarathon } from './marathon.ts';

/**
 * Golden cases in manifests/testdata/<case>/: values.yaml, and expected/ with every file
 * the render produces (expected/kubernetes/<namespace>/<component>.yaml and
 * expected/compose/…, expected/marathon/…). UPDATE_GOLDEN=1 rewrites expected/; review the diff before
 * committing. The log-rotation script is not copied into expected/compose: it is checked
 * to be the script itself.
 */
const DIR = fileURLToPath(new URL('../testdata/', import.meta.url));
const cases = readdirSync(DIR).filter((c) => existsSync(join(DIR, c, 'values.yaml')));

/** Everything a values file renders to, by path under expected/. */
function renderAll(valuesPath: string): Map<string, string> {
  const v = loadValues(valuesPath);
  const out = new Map<string, string>();
  for (const [p, t] of kubernetesFiles(renderKubernetes(v))) out.set(`kubernetes/${p}`, t);
  for (const [p, t] of renderCompose(v).files) {
    if (p === 'logrotate.mts') expect(t).toBe(LOGROTATE_SCRIPT);
    else out.set(`compose/${p}`, t);
  }
  for (const [p, t] of renderMarathon(v).files) out.set(`marathon/${p}`, t);
  return out;
}

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (at: string) => {
    for (const e of readdirSync(at, { withFileTypes: true })) (e.isDirectory() ? walk : (p: string) => out.push(relative(dir, p)))(join(at, e.name));
  };
  walk(dir);
  return out.sort();
}

describe('golden renders', () => {
  it('has the cases the brief asks for', () => {
    expect(cases).toEqual(expect.arrayContaining(['default', 'two-teams']));
  });

  for (const name of cases) {
    it(name, () => {
      const rendered = renderAll(join(DIR, name, 'values.yaml'));
      const expectedDir = join(DIR, name, 'expected');
      if (process.env.UPDATE_GOLDEN) {
        rmSync(expectedDir, { recursive: true, force: true });
        for (const [p, t] of rendered) {
          mkdirSync(dirname(join(expectedDir, p)), { recursive: true });
          writeFileSync(join(expectedDir, p), t);
        }
      }
      expect(listFiles(expectedDir), `${name}/expected is missing files or has extra ones: UPDATE_GOLDEN=1`).toEqual([...rendered.keys()].sort());
      for (const [p, t] of rendered) expect(t, `${name}/expected/${p}`).toBe(readFileSync(join(expectedDir, p), 'utf8'));
    });
  }
});

describe('determinism', () => {
  for (const name of cases) {
    it(`${name}: rendering twice gives the same bytes`, () => {
      const path = join(DIR, name, 'values.yaml');
      expect([...renderAll(path)]).toEqual([...renderAll(path)]);
    });
  }

  it('the order of keys in the values file does not matter', () => {
    const raw = parseYaml(readFileSync(join(DIR, 'two-teams', 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const reversed = (x: unknown): unknown =>
      Array.isArray(x) ? x.map(reversed) : x && typeof x === 'object' ? Object.fromEntries(Object.entries(x).reverse().map(([k, v]) => [k, reversed(v)])) : x;
    const a = kubernetesFiles(renderKubernetes(parseValues(raw)));
    const b = kubernetesFiles(renderKubernetes(parseValues(parseYaml(stringify(reversed(raw))))));
    expect([...b]).toEqual([...a]);
  });

  it('renders no timestamps and nothing random', () => {
    const all = [...renderAll(join(DIR, 'two-teams', 'values.yaml')).values()].join('\n');
    expect(all).not.toMatch(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/);
    expect(all).not.toMatch(/creationTimestamp/);
  });
});
