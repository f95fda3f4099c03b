/**
 * Rollout health by kubectl's own rules (`kubectl rollout status`), pure, on the objects
 * the API server returns. `progressing` means wait; `failed` means the rollout cannot
 * finish without a change (ProgressDeadlineExceeded).
 */
export type Health = { status: 'healthy' } | { status: 'progressing'; reason: string } | { status: 'failed'; reason: string };

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

export interface DeploymentLike {
  metadata: { generation?: number };
  spec?: { replicas?: number; paused?: boolean };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    conditions?: Condition[];
  };
}

export function deploymentHealth(d: DeploymentLike): Health {
  const s = d.status ?? {};
  if ((s.observedGeneration ?? 0) < (d.metadata.generation ?? 0)) return { status: 'progressing', reason: 'waiting for the controller to observe the new generation' };
  const progressing = s.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded') return { status: 'failed', reason: `progress deadline exceeded: ${progressing.message ?? ''}`.trim() };
  const want = d.spec?.replicas ?? 1;
  const updated = s.updatedReplicas ?? 0;
  if (updated < want) return { status: 'progressing', reason: `${updated} of ${want} updated replicas` };
  if ((s.replicas ?? 0) > updated) return { status: 'progressing', reason: `${(s.replicas ?? 0) - updated} old replicas pending termination` };
  if ((s.availableReplicas ?? 0) < updated) return { status: 'progressing', reason: `${s.availableReplicas ?? 0} of ${updated} updated replicas available` };
  return { status: 'healthy' };
}

export interface StatefulSetLike {
  metadata: { generation?: number };
  spec?: { replicas?: number; updateStrategy?: { type?: string; rollingUpdate?: { partition?: number } } };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    currentRevision?: string;
    updateRevision?: string;
  };
}

export function statefulSetHealth(s: StatefulSetLike): Health {
  const st = s.status ?? {};
  if (s.spec?.updateStrategy?.type === 'OnDelete') return { status: 'healthy' };
  if ((st.observedGeneration ?? 0) < (s.metadata.generation ?? 0)) return { status: 'progressing', reason: 'waiting for the controller to observe the new generation' };
  const want = s.spec?.replicas ?? 1;
  if ((st.readyReplicas ?? 0) < want) return { status: 'progressing', reason: `${st.readyReplicas ?? 0} of ${want} pods ready` };
  const partition = s.spec?.updateStrategy?.rollingUpdate?.partition ?? 0;
  if (partition > 0) {
    // A partitioned rollout is done when the pods at or above the partition are updated.
    if ((st.updatedReplicas ?? 0) < want - partition) return { status: 'progressing', reason: `${st.updatedReplicas ?? 0} of ${want - partition} partitioned pods updated` };
    return { status: 'healthy' };
  }
  if (st.updateRevision !== st.currentRevision) return { status: 'progressing', reason: `rolling update: ${st.updatedReplicas ?? 0} of ${want} pods at revision ${st.updateRevision}` };
  return { status: 'healthy' };
}
