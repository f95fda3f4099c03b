/**
 * The inventory of what a sync applied, as kustomize-controller keeps it: one id per object,
 * `<namespace>_<name>_<group>_<kind>` (empty namespace for cluster-scoped objects, empty
 * group for the core API). Pruning deletes the objects of the old inventory that are not in
 * the new one; the survivors of a failed prune stay in the inventory for the next run.
 */

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string | undefined };
}

export function objectId(o: ObjectRef): string {
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0]! : '';
  return `${o.metadata.namespace ?? ''}_${o.metadata.name}_${group}_${o.kind}`;
}

export function parseObjectId(id: string): { namespace: string; name: string; group: string; kind: string } {
  const [namespace = '', name = '', group = '', kind = ''] = id.split('_');
  return { namespace, name, group, kind };
}

/**
 * Ids in `before` and not in `after`: what to prune, workloads first. Namespaces are never
 * pruned: deleting one deletes everything in it (a team's metadata database, its log
 * volumes), which no commit should do by omission; the controller's RBAC has no delete on
 * namespaces either. Remove a namespace by hand.
 */
export function toPrune(before: readonly string[], after: readonly string[]): string[] {
  const keep = new Set(after);
  return before
    .filter((id) => !keep.has(id) && parseObjectId(id).kind !== 'Namespace')
    .sort((a, b) => pruneRank(parseObjectId(a).kind) - pruneRank(parseObjectId(b).kind) || a.localeCompare(b));
}

/** Workloads before their config, namespaces and CRDs last: the reverse of apply order. */
function pruneRank(kind: string): number {
  return -applyStage(kind);
}

/**
 * Apply stages: CRDs and Namespaces first (others depend on them), then cluster and
 * namespace config (RBAC, service accounts, config maps, secrets, services…), then
 * workloads, so that a pod never starts before what it mounts exists.
 */
export function applyStage(kind: string): number {
  if (kind === 'CustomResourceDefinition' || kind === 'Namespace') return 0;
  if (['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob', 'ReplicaSet', 'Pod'].includes(kind)) return 2;
  if (['HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Ingress'].includes(kind)) return 3;
  return 1;
}
