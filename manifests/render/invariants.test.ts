import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, matchesGlob } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Container, V1PodTemplateSpec } from '@kubernetes/client-node';
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ConfigSchema } from '../../core/config.ts';
import { applySetters, currentValues, fieldAllowed } from '../../gitops/update/setters.ts';
import { airflowRepository, loadValues, namespaceOf, parseValues, type Values } from '../values.ts';
import { renderCompose } from './compose.ts';
import { CLUSTER_SCOPED, type K8sObject, type Manifest } from './k8s.ts';
import { kubernetesFiles, kubernetesStream, manifestPath, renderKubernetes } from './kubernetes.ts';
import { orreryConfig } from './orrery.ts';
import { airflowPolicy, imagePolicies, ORRERY_SERVICES, orreryPolicy, orreryRepository } from './policies.ts';
import { imagePolicyOf } from './yaml.ts';

/**
 * The rendered objects are checked here, with no cluster: against @kubernetes/client-node's models (tsc checks the code; the round trip below
 * catches a field name the models do not know, which the API server would drop or
 * refuse), and for the invariants that make the objects work together. A real
 * kube-apiserver checks every object too: test/integration/manifests-dry-run.test.ts.
 */

const TESTDATA = fileURLToPath(new URL('../testdata/', import.meta.url));
const ENVS = fileURLToPath(new URL('../environments/', import.meta.url));
const valueFiles = [
  ...readdirSync(TESTDATA).map((c) => join(TESTDATA, c, 'values.yaml')),
  ...(existsSync(ENVS) ? readdirSync(ENVS).map((e) => join(ENVS, e, 'values.yaml')) : []),
].filter((p) => existsSync(p));
const twoTeams = () => loadValues(join(TESTDATA, 'two-teams', 'values.yaml'));

const MODEL: Record<string, string> = {
  'v1/Namespace': 'V1Namespace',
  'v1/Service': 'V1Service',
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'apps/v1/Deployment': 'V1Deployment',
  'apps/v1/StatefulSet': 'V1StatefulSet',
  'autoscaling/v2/HorizontalPodAutoscaler': 'V2HorizontalPodAutoscaler',
  'policy/v1/PodDisruptionBudget': 'V1PodDisruptionBudget',
  'networking.k8s.io/v1/Ingress': 'V1Ingress',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'V1ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'V1ClusterRoleBinding',
};

const podTemplate = (o: K8sObject): V1PodTemplateSpec | undefined => (o.kind === 'Deployment' || o.kind === 'StatefulSet' ? (o.spec as { template: V1PodTemplateSpec }).template : undefined);
const containersOf = (o: K8sObject): V1Container[] => {
  const spec = podTemplate(o)?.spec;
  return spec ? [...(spec.initContainers ?? []), ...spec.containers] : [];
};
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

describe.each(valueFiles.map((f) => [f.replace(/.*manifests\//, ''), f]))('invariants of %s', (_name, file) => {
  const v = loadValues(file);
  const manifests = renderKubernetes(v);
  const objects = manifests.flatMap((m) => m.objects);
  const inNs = (ns: string | undefined) => objects.filter((o) => o.metadata.namespace === ns);
  const workloads = objects.filter((o) => podTemplate(o));

  it('every object has apiVersion, kind and metadata.name, and a namespace exactly when namespaced', () => {
    for (const m of manifests) {
      for (const o of m.objects) {
        expect(o.apiVersion && o.kind && o.metadata.name, JSON.stringify(o.metadata)).toBeTruthy();
        if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBeUndefined();
        else expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(m.namespace);
      }
    }
  });

  it('no two objects share kind, namespace and name, and every namespace used is rendered', () => {
    const keys = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    const namespaces = new Set(objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name));
    for (const o of objects) if (o.metadata.namespace) expect(namespaces.has(o.metadata.namespace), o.metadata.namespace).toBe(true);
  });

  it('matches the Kubernetes models field for field (nothing the API would not know)', () => {
    for (const o of objects) {
      const model = MODEL[`${o.apiVersion}/${o.kind}`];
      expect(model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      const roundTrip = ObjectSerializer.serialize(ObjectSerializer.deserialize(structuredClone(o), model!), model!);
      expect(roundTrip, `${o.kind}/${o.metadata.name}`).toEqual(JSON.parse(JSON.stringify(o)));
    }
  });

  it('workloads select their own pod labels', () => {
    for (const w of workloads) {
      const spec = (w as { spec: unknown }).spec as { selector: { matchLabels: Record<string, string> } };
      expect(matches(spec.selector.matchLabels, podTemplate(w)!.metadata?.labels), `${w.kind}/${w.metadata.name}`).toBe(true);
    }
  });

  it('every Service selects pods that exist, on ports they declare', () => {
    for (const s of objects.filter((o) => o.kind === 'Service')) {
      const spec = (s as Extract<K8sObject, { kind: string }> & { spec: { selector: Record<string, string>; ports: Array<{ targetPort?: string | number }> } }).spec;
      const pods = inNs(s.metadata.namespace).filter((w) => podTemplate(w) && matches(spec.selector, podTemplate(w)!.metadata?.labels));
      expect(pods.length, `Service ${s.metadata.namespace}/${s.metadata.name} selects no pods`).toBeGreaterThan(0);
      for (const p of spec.ports) {
        if (typeof p.targetPort !== 'string') continue;
        for (const w of pods) expect(containersOf(w).some((c) => c.ports?.some((cp) => cp.name === p.targetPort)), `${s.metadata.name} → ${w.metadata.name}:${p.targetPort}`).toBe(true);
      }
    }
  });

  it('every StatefulSet names a headless Service that selects its pods', () => {
    for (const sts of objects.filter((o) => o.kind === 'StatefulSet')) {
      const spec = sts.spec as { serviceName: string };
      const svc = inNs(sts.metadata.namespace).find((o) => o.kind === 'Service' && o.metadata.name === spec.serviceName) as { spec: { clusterIP?: string; selector: Record<string, string> } } | undefined;
      expect(svc, `StatefulSet ${sts.metadata.name}: no Service ${spec.serviceName}`).toBeDefined();
      expect(svc!.spec.clusterIP).toBe('None');
      expect(matches(svc!.spec.selector, podTemplate(sts)!.metadata?.labels)).toBe(true);
    }
  });

  it('volumes, ConfigMaps and ServiceAccounts a pod refers to exist', () => {
    for (const w of workloads) {
      const spec = podTemplate(w)!.spec!;
      const claims = (((w as { spec: unknown }).spec as { volumeClaimTemplates?: Array<{ metadata: { name: string } }> }).volumeClaimTemplates ?? []).map((c) => c.metadata.name);
      const volumes = new Set([...(spec.volumes ?? []).map((vol) => vol.name), ...claims]);
      for (const c of containersOf(w)) for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${w.metadata.name}/${c.name}: volume ${m.name}`).toBe(true);
      for (const vol of spec.volumes ?? []) {
        if (vol.configMap) expect(inNs(w.metadata.namespace).some((o) => o.kind === 'ConfigMap' && o.metadata.name === vol.configMap!.name), `ConfigMap ${vol.configMap.name}`).toBe(true);
      }
      if (spec.serviceAccountName) expect(inNs(w.metadata.namespace).some((o) => o.kind === 'ServiceAccount' && o.metadata.name === spec.serviceAccountName), spec.serviceAccountName).toBe(true);
    }
  });

  it('renders no Secret and no password: secrets are referenced by name only', () => {
    expect(objects.some((o) => (o.kind as string) === 'Secret')).toBe(false);
    for (const w of workloads) {
      for (const c of containersOf(w)) {
        for (const e of c.env ?? []) {
          if (/PASSWORD|SECRET|FERNET|_KEY$|CONN$|BROKER_URL|RESULT_BACKEND/.test(e.name) && e.value !== undefined) {
            // A URL may be composed, but only from a $(VAR) that comes from a Secret.
            expect(e.value, `${w.metadata.name}/${c.name} ${e.name}`).toMatch(/\$\((REDIS|POSTGRES)_PASSWORD\)/);
          }
        }
      }
    }
  });

  it('HPAs, PDBs, Ingresses and RoleBindings point at objects that exist', () => {
    for (const o of objects) {
      const ns = inNs(o.metadata.namespace);
      if (o.kind === 'HorizontalPodAutoscaler') expect(ns.some((x) => x.kind === o.spec!.scaleTargetRef.kind && x.metadata.name === o.spec!.scaleTargetRef.name)).toBe(true);
      if (o.kind === 'PodDisruptionBudget') expect(ns.some((w) => podTemplate(w) && matches(o.spec!.selector!.matchLabels, podTemplate(w)!.metadata?.labels))).toBe(true);
      if (o.kind === 'Ingress') {
        for (const r of o.spec!.rules!) for (const p of r.http!.paths) expect(ns.some((x) => x.kind === 'Service' && x.metadata.name === p.backend.service!.name)).toBe(true);
      }
      if (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') {
        const scope = o.kind === 'RoleBinding' ? ns : objects;
        expect(scope.some((x) => x.kind === o.roleRef.kind && x.metadata.name === o.roleRef.name), `${o.kind} ${o.metadata.name}`).toBe(true);
        for (const s of o.subjects ?? []) expect(objects.some((x) => x.kind === 'ServiceAccount' && x.metadata.name === s.name && x.metadata.namespace === s.namespace), `${s.namespace}/${s.name}`).toBe(true);
      }
    }
  });

  it("the GitOps controller's ClusterRole covers every kind it applies, and no Secrets", () => {
    if (!v.orrery.gitops.enabled) return;
    const role = objects.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'orrery-gitops') as { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    const applied = manifests.filter((m) => !m.bootstrap).flatMap((m) => m.objects);
    for (const o of applied) {
      const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0]! : '';
      const resource = `${o.kind.toLowerCase()}${o.kind.endsWith('s') ? 'es' : 's'}`.replace('ingresss', 'ingresses').replace('policys', 'policies');
      const rule = role.rules.find((r) => r.apiGroups.includes(group) && r.resources.includes(resource));
      expect(rule, `${o.kind} (${group}/${resource})`).toBeDefined();
      expect(rule!.verbs).toEqual(expect.arrayContaining(['get', 'create', 'patch']));
    }
    expect(role.rules.flatMap((r) => r.resources)).not.toContain('secrets');
    expect(role.rules.find((r) => r.resources.includes('namespaces'))!.verbs).not.toContain('delete');
  });

  it('marks every Airflow image with its own deployment policy, and every Orrery image with its service policy', () => {
    for (const d of v.deployments) {
      const repo = airflowRepository(v, d);
      const airflowContainers = objects.filter((o) => o.metadata.namespace === namespaceOf(d)).flatMap(containersOf).filter((c) => c.image?.startsWith(`${repo}:`));
      expect(airflowContainers.length).toBeGreaterThanOrEqual(8); // init containers included
      for (const c of airflowContainers) expect(imagePolicyOf(c), c.name).toBe(airflowPolicy(d));
    }
    for (const c of workloads.flatMap(containersOf)) {
      const policy = imagePolicyOf(c);
      if (!policy) continue;
      expect([...v.deployments.map(airflowPolicy), ...ORRERY_SERVICES.map(orreryPolicy)]).toContain(policy);
    }
    const text = kubernetesStream(manifests);
    for (const line of text.split('\n').filter((l) => /^\s*(- )?image: /.test(l))) {
      const image = line.replace(/^\s*(- )?image: /, '').replace(/ #.*$/, '');
      const owner = v.deployments.find((d) => image.startsWith(`${airflowRepository(v, d)}:`));
      const service = ORRERY_SERVICES.find((s) => image.startsWith(`${orreryRepository(v, s)}:`));
      if (owner) expect(line).toContain(`# {"$imagepolicy": "${airflowPolicy(owner)}"}`);
      else if (service) expect(line).toContain(`# {"$imagepolicy": "${orreryPolicy(service)}"}`);
      else expect(line, 'third-party images are pinned, not marked').not.toContain('$imagepolicy');
    }
  });

  it("Orrery's rendered config passes Orrery's own config schema", () => {
    const text = (objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'orrery-config') as { data: Record<string, string> }).data['orrery.yaml']!;
    const placeholders = text.replace(/\$\{[A-Z_]+\}/g, 'placeholder');
    const parsed = ConfigSchema.safeParse(parseYaml(placeholders));
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
  });
});

describe('GitOps markers, cross-checked with the setters the controller runs', () => {
  const bump = (v: Values, team: string, tag: string): Values =>
    parseValues({ ...structuredClone(rawOf('two-teams')), deployments: (rawOf('two-teams').deployments as Array<{ name: string; image: { tag: string } }>).map((d) => (d.name === team ? { ...d, image: { ...d.image, tag } } : d)) });
  const rawOf = (c: string) => parseYaml(readFileSync(join(TESTDATA, c, 'values.yaml'), 'utf8')) as Record<string, unknown>;

  it("a push for one team rewrites exactly what re-rendering with that team's new tag gives, and nothing of the other team", () => {
    const v = twoTeams();
    const before = kubernetesFiles(renderKubernetes(v));
    const after = kubernetesFiles(renderKubernetes(bump(v, 'marketing', '2.4.0')));
    const policy = imagePolicies(v, '.').find((p) => p.name === 'marketing-airflow')!;
    let changedFiles = 0;
    for (const [path, text] of before) {
      const { text: updated, changes } = applySetters(text, 'marketing-airflow', { repository: 'registry.example.com/marketing/airflow', tag: '2.4.0' });
      expect(updated, path).toBe(after.get(path));
      if (changes.length > 0) {
        changedFiles++;
        expect(path.startsWith('airflow-marketing/'), path).toBe(true);
        // The generated policy's own allow-lists let every change through.
        expect(policy.files!.some((g) => matchesGlob(path, g)), path).toBe(true);
        for (const c of changes) expect(fieldAllowed(c.field, policy.fields), c.field).toBe(true);
      }
    }
    expect(changedFiles).toBeGreaterThanOrEqual(5);
    // The finance team's files are byte for byte the same.
    for (const [path, text] of before) if (path.startsWith('finance-airflow/')) expect(after.get(path)).toBe(text);
  });

  it('reads back the current tag of each policy from the rendered files', () => {
    const stream = kubernetesStream(renderKubernetes(twoTeams()));
    expect(new Set(currentValues(stream, 'finance-airflow').map((c) => c.value))).toEqual(new Set(['registry.example.com/finance/airflow:1.0.7']));
    expect(new Set(currentValues(stream, 'orrery-gitops').map((c) => c.value))).toEqual(new Set(['registry.example.com/orrery/gitops:0.4.3']));
    expect(parseAllDocuments(stream).length).toBe(renderKubernetes(twoTeams()).flatMap((m: Manifest) => m.objects).length);
  });

  it('marks the compose file the same way', () => {
    const v = twoTeams();
    const compose = renderCompose(v).files.get('docker-compose.yml')!;
    const { changes } = applySetters(compose, 'marketing-airflow', { repository: 'registry.example.com/marketing/airflow', tag: '9.9.9' });
    expect(changes.map((c) => c.field).sort()).toEqual(
      ['airflow-api-server', 'airflow-dag-processor', 'airflow-init', 'airflow-scheduler', 'airflow-worker'].map((s) => `services.${s}.image`),
    );
    expect(applySetters(compose, 'orrery-ingest', { repository: 'registry.example.com/orrery/ingest', tag: '9.9.9' }).changes).toHaveLength(1);
    // Every $ outside comments is a deploy-time ${VAR} reference: compose would otherwise interpolate it.
    expect(compose.replace(/ # \{"\$imagepolicy".*$/gm, '').replace(/\$\{[A-Z_]+:\?[^}]*\}/g, '')).not.toContain('$');
  });

  it("names the values file in gitops.repo.valuesFiles, so the controller may edit it beside repo.path (and only with valuesFile set)", () => {
    const dev = loadValues(join(ENVS, 'dev', 'values.yaml'));
    const repo = (orreryConfig(dev).gitops as { repo: { path: string; valuesFiles?: string[] } }).repo;
    expect(repo.valuesFiles).toEqual([dev.valuesFile]);
    expect(dev.valuesFile!.startsWith(`${repo.path}/`), 'the dev values file lies outside repo.path').toBe(false);
    expect((orreryConfig(twoTeams()).gitops as { repo: Record<string, unknown> }).repo).not.toHaveProperty('valuesFiles');
  });

  it('generates one policy per image, files scoped to its namespace, and lets the values override one', () => {
    const v = twoTeams();
    const policies = (orreryConfig(v).gitops as { policies: Array<{ name: string; mode: string; files?: string[] }> }).policies;
    expect(policies.map((p) => p.name)).toEqual(['marketing-airflow', 'finance-airflow', 'orrery-ingest', 'orrery-router', 'orrery-sinks', 'orrery-gitops']);
    expect(policies[0]).toMatchObject({ mode: 'pull-request' });
    expect(policies[1]!.files).toEqual(['clusters/prod/finance-airflow/*.yaml']);
    const paths = renderKubernetes(v).map(manifestPath);
    expect(paths.filter((p) => matchesGlob(`clusters/prod/${p}`, policies[1]!.files![0]!)).length).toBeGreaterThan(5);
  });
});
