import { describe, expect, it } from 'vitest';
import { deploymentHealth, statefulSetHealth } from './health.ts';
import { applyStage, objectId, toPrune } from './inventory.ts';

describe('deployment health (kubectl rollout status rules)', () => {
  const base = { metadata: { generation: 3 }, spec: { replicas: 3 } };
  it('waits for the controller to observe the generation', () => {
    expect(deploymentHealth({ ...base, status: { observedGeneration: 2, updatedReplicas: 3, replicas: 3, availableReplicas: 3 } }).status).toBe('progressing');
  });
  it('waits for updated, then for old replicas to go, then for availability', () => {
    expect(deploymentHealth({ ...base, status: { observedGeneration: 3, updatedReplicas: 1, replicas: 4, availableReplicas: 3 } })).toMatchObject({ reason: '1 of 3 updated replicas' });
    expect(deploymentHealth({ ...base, status: { observedGeneration: 3, updatedReplicas: 3, replicas: 4, availableReplicas: 3 } })).toMatchObject({ reason: '1 old replicas pending termination' });
    expect(deploymentHealth({ ...base, status: { observedGeneration: 3, updatedReplicas: 3, replicas: 3, availableReplicas: 2 } })).toMatchObject({ status: 'progressing' });
    expect(deploymentHealth({ ...base, status: { observedGeneration: 3, updatedReplicas: 3, replicas: 3, availableReplicas: 3 } })).toEqual({ status: 'healthy' });
  });
  it('ProgressDeadlineExceeded is a failure', () => {
    const d = { ...base, status: { observedGeneration: 3, updatedReplicas: 1, replicas: 3, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "x" has timed out progressing.' }] } };
    expect(deploymentHealth(d)).toMatchObject({ status: 'failed' });
  });
});

describe('statefulset health', () => {
  const base = { metadata: { generation: 2 }, spec: { replicas: 2 } };
  it('needs ready replicas and currentRevision == updateRevision', () => {
    expect(statefulSetHealth({ ...base, status: { observedGeneration: 2, readyReplicas: 1, updateRevision: 'b', currentRevision: 'b' } }).status).toBe('progressing');
    expect(statefulSetHealth({ ...base, status: { observedGeneration: 2, readyReplicas: 2, updatedReplicas: 1, updateRevision: 'b', currentRevision: 'a' } }).status).toBe('progressing');
    expect(statefulSetHealth({ ...base, status: { observedGeneration: 2, readyReplicas: 2, updatedReplicas: 2, updateRevision: 'b', currentRevision: 'b' } })).toEqual({ status: 'healthy' });
  });
  it('a partitioned rollout counts only the pods above the partition', () => {
    const s = { metadata: { generation: 2 }, spec: { replicas: 4, updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 2 } } } };
    expect(statefulSetHealth({ ...s, status: { observedGeneration: 2, readyReplicas: 4, updatedReplicas: 1, updateRevision: 'b', currentRevision: 'a' } }).status).toBe('progressing');
    expect(statefulSetHealth({ ...s, status: { observedGeneration: 2, readyReplicas: 4, updatedReplicas: 2, updateRevision: 'b', currentRevision: 'a' } }).status).toBe('healthy');
  });
});

describe('inventory', () => {
  it('ids objects as namespace_name_group_kind', () => {
    expect(objectId({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'airflow-a' } })).toBe('airflow-a_web_apps_Deployment');
    expect(objectId({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'airflow-a' } })).toBe('_airflow-a__Namespace');
  });
  it('prunes what left, workloads first, and never a namespace', () => {
    const before = ['_ns__Namespace', 'ns_cfg__ConfigMap', 'ns_web_apps_Deployment', 'ns_keep__Service'];
    expect(toPrune(before, ['ns_keep__Service'])).toEqual(['ns_web_apps_Deployment', 'ns_cfg__ConfigMap']);
  });
  it('stages CRDs and namespaces, then config, then workloads', () => {
    expect(['Deployment', 'ConfigMap', 'Namespace', 'Ingress'].sort((a, b) => applyStage(a) - applyStage(b))).toEqual(['Namespace', 'ConfigMap', 'Deployment', 'Ingress']);
  });
});
