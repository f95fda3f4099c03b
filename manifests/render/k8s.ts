import { createHash } from 'node:crypto';
import type {
  V1ConfigMap,
  V1Container,
  V1EnvVar,
  V1Ingress,
  V1Namespace,
  V1ObjectMeta,
  V1PersistentVolumeClaim,
  V1PodDisruptionBudget,
  V1Probe,
  V1ResourceRequirements,
  V1Role,
  V1RoleBinding,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Service,
  V1ServiceAccount,
  V1StatefulSet,
  V1Deployment,
  V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import type { Resources } from '../values.ts';

/**
 * Typed building blocks of the manifests. Objects are plain data typed with
 * @kubernetes/client-node's models (type-only imports: nothing of the client runs), with
 * apiVersion, kind and metadata.name made required, so that tsc checks every field name
 * and shape we render against the Kubernetes API.
 */

type Named<T, Kind extends string> = Omit<T, 'apiVersion' | 'kind' | 'metadata' | 'status'> & {
  apiVersion: string;
  kind: Kind;
  metadata: V1ObjectMeta & { name: string };
};

export type Namespace = Named<V1Namespace, 'Namespace'>;
export type Deployment = Named<V1Deployment, 'Deployment'>;
export type StatefulSet = Named<V1StatefulSet, 'StatefulSet'>;
export type Service = Named<V1Service, 'Service'>;
export type ConfigMap = Named<V1ConfigMap, 'ConfigMap'>;
export type ServiceAccount = Named<V1ServiceAccount, 'ServiceAccount'>;
export type Role = Named<V1Role, 'Role'>;
export type RoleBinding = Named<V1RoleBinding, 'RoleBinding'>;
export type ClusterRole = Named<V1ClusterRole, 'ClusterRole'>;
export type ClusterRoleBinding = Named<V1ClusterRoleBinding, 'ClusterRoleBinding'>;
export type HorizontalPodAutoscaler = Named<V2HorizontalPodAutoscaler, 'HorizontalPodAutoscaler'>;
export type PodDisruptionBudget = Named<V1PodDisruptionBudget, 'PodDisruptionBudget'>;
export type Ingress = Named<V1Ingress, 'Ingress'>;
export type PersistentVolumeClaim = V1PersistentVolumeClaim;

/** Every kind we render. */
export type K8sObject =
  | Namespace
  | Deployment
  | StatefulSet
  | Service
  | ConfigMap
  | ServiceAccount
  | Role
  | RoleBinding
  | ClusterRole
  | ClusterRoleBinding
  | HorizontalPodAutoscaler
  | PodDisruptionBudget
  | Ingress;

/** Kinds that live outside namespaces. */
export const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

/** One rendered file: the objects of one component in one namespace. */
export interface Manifest {
  namespace: string;
  component: string;
  objects: K8sObject[];
  /**
   * Not for the GitOps controller to apply: written under `bootstrap/` instead of the
   * namespace's folder, for an admin to apply once (the controller's own RBAC).
   */
  bootstrap?: boolean;
}

/** The recommended labels; `selector` is the immutable subset a workload selects on. */
export function labels(name: string, instance: string, component: string): { all: Record<string, string>; selector: Record<string, string> } {
  const selector = {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/instance': instance,
    'app.kubernetes.io/component': component,
  };
  return { selector, all: { ...selector, 'app.kubernetes.io/part-of': 'orrery', 'app.kubernetes.io/managed-by': 'orrery-manifests' } };
}

/** Resources from values, without empty parts (so the YAML has no `{}` noise). */
export function resources(r: Resources): V1ResourceRequirements {
  const out: V1ResourceRequirements = {};
  if (r.requests && Object.keys(r.requests).length > 0) out.requests = { ...r.requests } as Record<string, string>;
  if (r.limits && Object.keys(r.limits).length > 0) out.limits = { ...r.limits } as Record<string, string>;
  return out;
}

/**
 * A short content hash for a pod-template annotation: when a ConfigMap's data changes, the
 * pods that read it roll (a subPath mount never sees updates, and env never does).
 */
export function checksum(data: unknown): string {
  return createHash('sha256').update(JSON.stringify(data)).digest('hex');
}

/** An env var from a key of a Secret; the value never appears in the manifests. */
export function secretEnv(name: string, secret: string, key: string, optional?: boolean): V1EnvVar {
  return { name, valueFrom: { secretKeyRef: { name: secret, key, ...(optional ? { optional } : {}) } } };
}

/** An HTTP probe on a named port. */
export function httpProbe(path: string, port: string, o: { initialDelaySeconds?: number; periodSeconds?: number; timeoutSeconds?: number; failureThreshold?: number } = {}): V1Probe {
  return { httpGet: { path, port }, ...o };
}

/** The pod-level settings every container we write shares: no privilege escalation, no root filesystem writes. */
export const restrictedContainer: NonNullable<V1Container['securityContext']> = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
};

/** A ReadWriteOnce claim template for a StatefulSet. */
export function claimTemplate(name: string, size: string, storageClass: string | undefined): PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: size } }, ...(storageClass ? { storageClassName: storageClass } : {}) },
  };
}
