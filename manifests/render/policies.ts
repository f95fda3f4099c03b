import type { z } from 'zod';
import type { ImagePolicy } from '../../core/gitops-config.ts';
import { airflowRepository, namespaceOf, type AirflowDeployment, type Values } from '../values.ts';

/**
 * The GitOps image policies the manifests are marked for, one per image we build: each
 * Airflow deployment's image (`<deployment>-airflow`) and each Orrery service's
 * (`orrery-ingest`, …). The same names go into the markers on the image fields and into
 * the `gitops.policies` of Orrery's config, so a push to `<registry>/<team>/airflow` is
 * matched to that team's policy and rewrites only the fields marked with it.
 */

export const ORRERY_SERVICES = ['ingest', 'router', 'sinks', 'gitops'] as const;
export type OrreryService = (typeof ORRERY_SERVICES)[number];

/** The policy of a deployment's Airflow image. */
export const airflowPolicy = (d: AirflowDeployment): string => `${d.name}-airflow`;
/** The policy of an Orrery service's image. */
export const orreryPolicy = (s: OrreryService): string => `orrery-${s}`;
export const orreryRepository = (v: Values, s: OrreryService): string => v.orrery[s].image.repository ?? `${v.registry}/orrery/${s}`;
export const orreryImage = (v: Values, s: OrreryService): string => `${orreryRepository(v, s)}:${v.orrery[s].image.tag ?? v.orrery.tag}`;

/** Where a policy may write: image fields of pod templates only, nothing else. */
const POD_IMAGE_FIELDS = ['spec.template.spec.containers.*.image', 'spec.template.spec.initContainers.*.image'];

/**
 * The policies for Orrery's config. `repoPath` is where the rendered manifests live in the
 * manifests repository (gitops.repo.path); each policy may only touch its own files.
 *
 * @example imagePolicies(values, 'manifests/environments/dev/rendered')
 */
export function imagePolicies(v: Values, repoPath: string): Array<z.input<typeof ImagePolicy>> {
  const prefix = repoPath === '.' || repoPath === '' ? '' : `${repoPath.replace(/\/+$/, '')}/`;
  // With the values file in the repository, its tag (when marked) moves with the render.
  const values = (field: string) => (v.valuesFile ? { files: [v.valuesFile], fields: [field] } : { files: [], fields: [] });
  const airflow = v.deployments.map((d, i) => ({
    name: airflowPolicy(d),
    image: airflowRepository(v, d),
    tags: d.image.policy.tags,
    mode: d.image.policy.mode,
    files: [`${prefix}${namespaceOf(d)}/*.yaml`, ...values('').files],
    fields: [...POD_IMAGE_FIELDS, ...values(`deployments.${i}.image.tag`).fields],
  }));
  const orrery = ORRERY_SERVICES.filter((s) => s !== 'gitops' || v.orrery.gitops.enabled).map((s) => ({
    name: orreryPolicy(s),
    image: orreryRepository(v, s),
    tags: v.orrery[s].image.policy.tags,
    mode: v.orrery[s].image.policy.mode,
    files: [`${prefix}${v.orrery.namespace}/${s}.yaml`, ...values('').files],
    fields: [...POD_IMAGE_FIELDS, ...values(`orrery.${s}.image.tag`).fields],
  }));
  return [...airflow, ...orrery];
}
