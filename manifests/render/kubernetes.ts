import type { Values } from '../values.ts';
import { renderAirflow } from './airflow.ts';
import type { Manifest } from './k8s.ts';
import { renderGitopsRbac, renderOrrery } from './orrery.ts';
import { renderPrometheus } from './prometheus.ts';
import { toYamlStream } from './yaml.ts';

/**
 * Every Kubernetes object of an installation, grouped by namespace and component. Pure and
 * deterministic: the same values give the same objects in the same order, and so
 * byte-identical YAML (no timestamps, no random, keys sorted by the writer).
 *
 * @example const manifests = renderKubernetes(loadValues('values.yaml'));
 */
export function renderKubernetes(v: Values): Manifest[] {
  const out: Manifest[] = [...renderOrrery(v)];
  for (const d of v.deployments) out.push(...renderAirflow(v, d), renderPrometheus(v, d));
  const rbac = renderGitopsRbac(v, out);
  if (rbac) out.push(rbac);
  return out.sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.component, b.component));
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A manifest's path in the output tree: `<namespace>/<component>.yaml`, or
 * `bootstrap/<namespace>-<component>.yaml` for what an admin applies once (renderToFiles
 * writes those outside the synced tree).
 */
export const manifestPath = (m: Manifest): string => (m.bootstrap ? `bootstrap/${m.namespace}-${m.component}.yaml` : `${m.namespace}/${m.component}.yaml`);

/** The file tree: path → YAML text (one multi-document file per namespace and component). */
export function kubernetesFiles(manifests: readonly Manifest[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const m of manifests) {
    const path = manifestPath(m);
    if (files.has(path)) throw new Error(`two manifests render to ${path}`);
    files.set(path, toYamlStream(m.objects));
  }
  return files;
}

/**
 * Everything as one multi-document stream, Namespaces first so that `kubectl apply -f -`
 * never meets a namespaced object before its namespace.
 */
export function kubernetesStream(manifests: readonly Manifest[]): string {
  const objects = manifests.flatMap((m) => m.objects);
  return toYamlStream([...objects.filter((o) => o.kind === 'Namespace'), ...objects.filter((o) => o.kind !== 'Namespace')]);
}
