import { CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { OrreryError } from '../../core/errors.ts';
import { deploymentHealth, statefulSetHealth, type Health } from './health.ts';
import { objectId, parseObjectId, type ObjectRef } from './inventory.ts';

/** The cluster side of a sync: apply, delete, and read health, on the real API server. */
export interface Applier {
  /** Server-side apply (`application/apply-patch+yaml`, fieldManager `orrery`). */
  apply(obj: ObjectRef & Record<string, unknown>, opts: { force: boolean }): Promise<void>;
  /** Deletes by inventory id; absent objects count as deleted. */
  remove(id: string, apiVersionOf: (group: string, kind: string) => string): Promise<void>;
  health(obj: ObjectRef): Promise<Health | undefined>;
  /**
   * Kubernetes' "forced rollback" of a StatefulSet (the StatefulSet docs): with the
   * default OrderedReady policy, the controller waits forever for a pod of the bad revision
   * to become Ready, even after the template is reverted. This deletes the pods that are
   * not Ready and not at the update revision, so the controller recreates them from the
   * reverted template. Other kinds: nothing to do. Returns the pods deleted.
   */
  forceRollback(obj: ObjectRef): Promise<string[]>;
}

/** Kubernetes API errors: 5xx, 429, conflicts on SSA races and network errors retry; 4xx do not. */
function wrap(err: unknown, what: string): OrreryError {
  const code = (err as { code?: number }).code ?? (err as { statusCode?: number }).statusCode;
  const body = (err as { body?: unknown }).body;
  const message = typeof body === 'string' ? body.slice(0, 300) : (err as Error).message;
  // No status code: the API server was not reached, which a later try may fix.
  const retriable = code === undefined ? true : code >= 500 || code === 429 || code === 409;
  return new OrreryError(code === undefined ? 'KUBE_UNREACHABLE' : `KUBE_${code}`, `${what}: ${message}`, { retriable, cause: err });
}

interface StatefulSetLive {
  metadata: { generation?: number };
  spec: { selector: { matchLabels?: Record<string, string> }; updateStrategy?: { type?: string } };
  status?: { observedGeneration?: number; updateRevision?: string };
}

/**
 * @example const applier = createKubeApplier(KubeConfig from KUBECONFIG);
 */
export function createKubeApplier(kc: KubeConfig): Applier {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async apply(obj, opts) {
      try {
        await api.patch(obj as KubernetesObject, undefined, undefined, 'orrery', opts.force, PatchStrategy.ServerSideApply);
      } catch (err) {
        throw wrap(err, `apply ${objectId(obj)}`);
      }
    },
    async remove(id, apiVersionOf) {
      const { namespace, name, group, kind } = parseObjectId(id);
      try {
        await api.delete({ apiVersion: apiVersionOf(group, kind), kind, metadata: { name, ...(namespace ? { namespace } : {}) } }, undefined, undefined, undefined, undefined, 'Foreground');
      } catch (err) {
        if ((err as { code?: number }).code === 404) return;
        throw wrap(err, `delete ${id}`);
      }
    },
    async health(obj) {
      if (obj.kind !== 'Deployment' && obj.kind !== 'StatefulSet') return undefined;
      let live: KubernetesObject & Record<string, unknown>;
      try {
        const header = { apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace ?? 'default' } };
        live = (await api.read(header as never)) as KubernetesObject & Record<string, unknown>;
      } catch (err) {
        throw wrap(err, `read ${objectId(obj)}`);
      }
      return obj.kind === 'Deployment' ? deploymentHealth(live as never) : statefulSetHealth(live as never);
    },
    async forceRollback(obj) {
      if (obj.kind !== 'StatefulSet') return [];
      const namespace = obj.metadata.namespace ?? 'default';
      const deleted: string[] = [];
      try {
        const live = (await api.read({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata.name, namespace } } as never)) as unknown as StatefulSetLive;
        // Until the controller has seen the reverted template, updateRevision is still the bad one.
        if ((live.status?.observedGeneration ?? 0) < (live.metadata.generation ?? 0) || !live.status?.updateRevision) return [];
        if (live.spec.updateStrategy?.type === 'OnDelete') return [];
        const labelSelector = Object.entries(live.spec.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
        const pods = await core.listNamespacedPod({ namespace, labelSelector });
        for (const pod of pods.items) {
          const owned = pod.metadata?.ownerReferences?.some((o) => o.kind === 'StatefulSet' && o.name === obj.metadata.name);
          const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
          const stale = pod.metadata?.labels?.['controller-revision-hash'] !== live.status.updateRevision;
          if (!owned || ready || !stale || pod.metadata?.deletionTimestamp) continue;
          await core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace });
          deleted.push(pod.metadata!.name!);
        }
      } catch (err) {
        if ((err as { code?: number }).code === 404) return deleted;
        throw wrap(err, `force rollback of ${objectId(obj)}`);
      }
      return deleted;
    },
  };
}

/** A KubeConfig from a file path (KUBECONFIG), or undefined when none is configured. */
export function loadKubeConfig(path: string | undefined): KubeConfig | undefined {
  if (!path) return undefined;
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
