import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { applySetters } from '../../gitops/update/setters.ts';
import { fileAllowed } from '../../gitops/source/git.ts';
import { renderToFiles } from '../cli.ts';
import { kubernetesFiles, renderKubernetes } from '../render/kubernetes.ts';
import { orreryConfig } from '../render/orrery.ts';
import { loadValues, parseValues } from '../values.ts';

/**
 * Each environment's rendered/ is committed (it is what the GitOps controller syncs), so
 * it must be what its values.yaml renders to. When stale:
 *   orrery render manifests/environments/<env>/values.yaml --out manifests/environments/<env>/rendered --prune
 */
const ENVS = fileURLToPath(new URL('./', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const envs = readdirSync(ENVS, { withFileTypes: true }).filter((e) => e.isDirectory() && existsSync(join(ENVS, e.name, 'values.yaml'))).map((e) => e.name);

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    for (const e of readdirSync(at, { withFileTypes: true })) (e.isDirectory() ? walk : (p: string) => out.push(p))(join(at, e.name));
  };
  walk(dir);
  return out.sort();
}

describe('environments', () => {
  it('has the dev environment', () => expect(envs).toContain('dev'));

  for (const env of envs) {
    const valuesPath = join(ENVS, env, 'values.yaml');
    const outDir = join(ENVS, env, 'rendered');

    it(`${env}: the committed render is up to date with values.yaml`, async () => {
      const { changed, stale } = await renderToFiles({ valuesPath, outDir, target: 'kubernetes', check: true });
      expect({ changed, stale }, `re-render: orrery render ${relative(REPO, valuesPath)} --out ${relative(REPO, outDir)} --prune`).toEqual({ changed: [], stale: [] });
    });

    it(`${env}: an image push, applied by the generated policies, keeps values and render in step`, () => {
      const v = loadValues(valuesPath);
      if (!v.valuesFile) return;
      expect(v.valuesFile).toBe(relative(REPO, valuesPath));
      const policies = (orreryConfig(v).gitops as { policies: Array<{ name: string; image: string; files?: string[]; fields?: string[] }> }).policies;
      // The repository as the controller sees it: paths relative to its root.
      const repo = new Map([valuesPath, ...listFiles(outDir)].map((p) => [relative(REPO, p), readFileSync(p, 'utf8')]));
      for (const policy of policies) {
        const pushed = new Map(repo);
        let touched = 0;
        for (const [file, text] of repo) {
          if (!fileAllowed(file, policy.files)) continue;
          const { text: updated, changes } = applySetters(text, policy.name, { repository: policy.image, tag: '9.9.9' }, policy.fields ? { allowFields: policy.fields } : {});
          pushed.set(file, updated);
          touched += changes.length;
        }
        expect(touched, policy.name).toBeGreaterThan(1);
        const updatedValues = pushed.get(v.valuesFile)!;
        expect(updatedValues, `${policy.name}: the values file's tag moved`).not.toBe(repo.get(v.valuesFile));
        const rerendered = kubernetesFiles(renderKubernetes(parseValues(parseYaml(updatedValues))));
        for (const [path, text] of rerendered) if (!path.startsWith('bootstrap/')) expect(pushed.get(join(relative(REPO, outDir), path)), `${policy.name}: ${path}`).toBe(text);
      }
    });
  }
});
