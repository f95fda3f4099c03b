import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HttpMethod, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseManifests } from '../../gitops/apply/manifests.ts';
import type { K8sObject } from '../../manifests/render/k8s.ts';
import { kubernetesFiles, renderKubernetes } from '../../manifests/render/kubernetes.ts';
import { parseValues } from '../../manifests/values.ts';
import { serviceEnv } from '../helpers/index.ts';

/**
 * Every object the manifests render is accepted by a real kube-apiserver: server-side
 * apply with dryRun=All (fieldManager orrery), as the GitOps sync applies them. The API
 * server runs its full validation and admission on a dry run, so this catches what the
 * client-node types cannot (immutable selectors, quantity formats, name lengths, …).
 *
 * What is submitted is the rendered YAML text read back as the GitOps sync reads it
 * (parseManifests, in its apply order), so a value the writer would change on the way
 * (a version string that reads back as a number) is caught too. It goes to the server as it is, not through client-node's ObjectSerializer
 * (which silently drops fields its models do not know), with fieldValidation=Strict, so
 * an unknown or misspelt field is an error here, as it is for `kubectl apply`.
 *
 * Namespaced objects need their namespace to exist, so the rendered Namespaces are applied
 * for real, under unique names (the values' own namespace settings, with a suffix: other
 * runs share the cluster), and deleted afterwards.
 */
const MANIFESTS = fileURLToPath(new URL('../../manifests/', import.meta.url));
/** Every golden case and every example environment: `testdata/<case>/values.yaml`, … */
const CASES = ['testdata', 'environments'].flatMap((dir) =>
  readdirSync(`${MANIFESTS}${dir}`)
    .map((c) => `${dir}/${c}/values.yaml`)
    .filter((f) => existsSync(`${MANIFESTS}${f}`)),
);

type Raw = { orrery?: { namespace?: string }; deployments: Array<{ name: string; namespace?: string }> };

/** The case's values with every namespace made unique to this run. */
function valuesFor(file: string, suffix: string) {
  const raw = parseYaml(readFileSync(`${MANIFESTS}${file}`, 'utf8')) as Raw;
  raw.orrery = { ...raw.orrery, namespace: `${raw.orrery?.namespace ?? 'orrery'}-${suffix}` };
  for (const d of raw.deployments) d.namespace = `${d.namespace ?? `airflow-${d.name}`}-${suffix}`;
  return parseValues(raw, file);
}

const idOf = (o: K8sObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

function apiError(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  try {
    const status = typeof body === 'string' ? (JSON.parse(body) as { message?: string }) : (body as { message?: string } | undefined);
    if (status?.message) return `${(err as { code?: number }).code ?? ''} ${status.message}`.trim();
  } catch {
    // not JSON: fall through to the message
  }
  return (err as Error).message;
}

/** Server-side apply of the object as it is, strict about fields. */
class StrictApplyApi extends KubernetesObjectApi {
  static make(kc: KubeConfig): StrictApplyApi {
    const api = kc.makeApiClient(StrictApplyApi);
    api.setDefaultNamespace(kc);
    return api;
  }

  async apply(o: KubernetesObject, dryRun: boolean): Promise<void> {
    const request = this.configuration.baseServer.makeRequestContext(await this.specUriPath(o, 'patch'), HttpMethod.PATCH);
    request.setHeaderParam('Accept', 'application/json');
    request.setHeaderParam('Content-Type', PatchStrategy.ServerSideApply);
    request.setQueryParam('fieldManager', 'orrery');
    request.setQueryParam('force', 'true');
    request.setQueryParam('fieldValidation', 'Strict');
    if (dryRun) request.setQueryParam('dryRun', 'All');
    request.setBody(JSON.stringify(o));
    await this.requestPromise(request);
  }
}

describe('manifests: a real kube-apiserver accepts every rendered object (server-side apply, dry run)', () => {
  let api: StrictApplyApi;
  const created: string[] = [];
  const apply = (o: K8sObject, dryRun: boolean) => api.apply(o as KubernetesObject, dryRun);

  beforeAll(() => {
    const kc = new KubeConfig();
    kc.loadFromFile(serviceEnv('KUBECONFIG'));
    api = StrictApplyApi.make(kc);
  });

  afterAll(async () => {
    await Promise.allSettled(created.map((name) => api.delete({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })));
  });

  it('the dry run validates: a rendered Deployment broken on purpose is refused, with the reason', async () => {
    const objects = renderKubernetes(valuesFor('testdata/default/values.yaml', 'x')).flatMap((m) => m.objects);
    const deployment = structuredClone(objects.find((o) => o.kind === 'Deployment')!) as K8sObject & { spec: { selector: { matchLabels: Record<string, string> } } };
    deployment.metadata.namespace = 'default';
    deployment.spec.selector.matchLabels = { 'app.kubernetes.io/name': 'not-the-template' };
    const err = await apply(deployment, true).then(() => undefined, (e: unknown) => e);
    expect(err, 'the API server accepted a Deployment whose selector does not match its pods').toMatchObject({ code: 422 });
    expect(apiError(err)).toMatch(/selector.*does not match template.*labels/);
  });

  it('the dry run validates: a field the API does not know is refused (SSA checks the schema)', async () => {
    const objects = renderKubernetes(valuesFor('testdata/default/values.yaml', 'x')).flatMap((m) => m.objects);
    const service = { ...structuredClone(objects.find((o) => o.kind === 'Service')!), metadata: { name: 'typo', namespace: 'default' } };
    (service as unknown as { spec: Record<string, unknown> }).spec.clusterIp = 'None';
    const err = await apply(service as K8sObject, true).then(() => undefined, (e: unknown) => e);
    expect(err, 'the API server accepted spec.clusterIp (the field is clusterIP)').toBeDefined();
    expect(apiError(err)).toContain('clusterIp');
  });

  it('covers the golden cases and the dev environment', () => {
    expect(CASES).toEqual(expect.arrayContaining(['testdata/default/values.yaml', 'testdata/two-teams/values.yaml', 'environments/dev/values.yaml']));
  });

  for (const file of CASES) {
    it(file.replace(/\/values\.yaml$/, ''), async () => {
      const suffix = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
      const objects = parseManifests(kubernetesFiles(renderKubernetes(valuesFor(file, suffix)))) as unknown as K8sObject[];
      expect(objects.length).toBeGreaterThan(20);
      const failures: string[] = [];
      // Namespaces for real first: a namespaced dry run needs its namespace to exist.
      for (const o of objects.filter((o) => o.kind === 'Namespace')) {
        try {
          await apply(o, false);
          created.push(o.metadata.name);
        } catch (err) {
          failures.push(`${idOf(o)}: ${apiError(err)}`);
        }
      }
      expect(failures, `namespaces were refused:\n${failures.join('\n')}`).toEqual([]);
      for (const o of objects) {
        try {
          await apply(o, true);
        } catch (err) {
          failures.push(`${idOf(o)}: ${apiError(err)}`);
        }
      }
      expect(failures, `the API server refused ${failures.length} of ${objects.length} objects:\n${failures.join('\n')}`).toEqual([]);
    });
  }
});
