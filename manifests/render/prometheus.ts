import { namespaceOf, type AirflowDeployment, type Values } from '../values.ts';
import { AIRFLOW_SERVICES } from './airflow.ts';
import { checksum, claimTemplate, httpProbe, labels, resources, restrictedContainer, type ConfigMap, type Manifest, type PodDisruptionBudget, type Role, type RoleBinding, type Service, type ServiceAccount, type StatefulSet } from './k8s.ts';
import { toYaml } from './yaml.ts';

/**
 * Per Airflow deployment, an HA pair of Prometheus servers: a StatefulSet of (by default)
 * two replicas, each with its own volume, both scraping the same targets (the
 * deployment's statsd exporter, Orrery's pods, kube-state-metrics when given) and
 * evaluating the same alert rules. The pair differs only in the `replica` external label,
 * which is dropped before alerts reach Alertmanager, so Alertmanager sees one alert from
 * two senders and deduplicates it; either server alone keeps alerting.
 */

/** A Prometheus alerting rule. */
export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** The alert rules of one deployment's Prometheus (see the README for what each means). */
export function alertRules(v: Values, d: AirflowDeployment): { groups: Array<{ name: string; rules: AlertRule[] }> } {
  const a = v.prometheus.alerts;
  const namespaces = `${v.orrery.namespace}|${namespaceOf(d)}`;
  const warn = { severity: 'warning' };
  const page = { severity: 'critical' };
  return {
    groups: [
      {
        name: 'orrery',
        rules: [
          {
            alert: 'OrrerySinkFailureRateHigh',
            // Failed attempts over all attempts, per destination: retries count, so a flaky
            // destination shows before events become dead letters.
            expr: [
              'sum by (destination) (rate(orrery_sink_delivery_failures_total[5m]))',
              '  / (sum by (destination) (rate(orrery_sink_delivery_failures_total[5m])) + sum by (destination) (rate(orrery_sink_events_delivered_total[5m])))',
              `  > ${a.sinkFailureRatio}`,
            ].join('\n'),
            for: '10m',
            labels: warn,
            annotations: {
              summary: 'Deliveries to {{ $labels.destination }} are failing',
              description: `More than ${a.sinkFailureRatio * 100}% of delivery attempts to {{ $labels.destination }} failed over 10 minutes ({{ $value | humanizePercentage }}).`,
            },
          },
          {
            alert: 'OrreryRouterConsumerLagHigh',
            expr: `max(orrery_router_consumer_lag) > ${a.consumerLag}`,
            for: '10m',
            labels: warn,
            annotations: { summary: 'The router is falling behind', description: 'The router has {{ $value }} raw events not yet routed (more than ' + a.consumerLag + ' for 10 minutes).' },
          },
          {
            alert: 'OrrerySinkDeadLettersGrowing',
            expr: `sum by (destination) (increase(orrery_sink_events_dead_lettered_total[15m])) > ${a.deadLetters}`,
            for: '0m',
            labels: page,
            annotations: { summary: 'Events to {{ $labels.destination }} are dead-lettered', description: '{{ $value }} events became dead letters in 15 minutes: `orrery dlq list --destination {{ $labels.destination }}`.' },
          },
          {
            alert: 'OrreryRouterDeadLettersGrowing',
            expr: `sum by (reason) (increase(orrery_router_events_dead_lettered_total[15m])) > ${a.deadLetters}`,
            for: '0m',
            labels: warn,
            annotations: { summary: 'The router sends events to the DLQ ({{ $labels.reason }})', description: '{{ $value }} events went to the DLQ topic in 15 minutes with reason {{ $labels.reason }}.' },
          },
          {
            alert: 'OrreryIngestSpooling',
            // A 2xx while spooling is still durable, but Kafka is away or slow.
            expr: 'max by (pod) (orrery_ingest_spool_depth) > 0',
            for: a.spoolFor,
            labels: page,
            annotations: { summary: 'Ingest {{ $labels.pod }} is spooling to disk', description: '{{ $value }} events wait in the local spool of {{ $labels.pod }}: Kafka is unreachable or slower than ingest.produceTimeoutMs.' },
          },
          {
            alert: 'OrreryTargetDown',
            expr: 'up{job="orrery"} == 0',
            for: '5m',
            labels: warn,
            annotations: { summary: 'Orrery pod {{ $labels.pod }} cannot be scraped', description: '{{ $labels.component }} pod {{ $labels.pod }} has not answered /metrics for 5 minutes.' },
          },
        ],
      },
      {
        name: 'rollouts',
        rules: [
          {
            alert: 'DeploymentRolloutFailed',
            // The Deployment controller sets Progressing=False (ProgressDeadlineExceeded) when
            // a rollout makes no progress for progressDeadlineSeconds (600 s by default).
            expr: `kube_deployment_status_condition{namespace=~"${namespaces}",condition="Progressing",status="false"} == 1`,
            for: '0m',
            labels: page,
            annotations: { summary: 'Rollout of {{ $labels.namespace }}/{{ $labels.deployment }} failed', description: 'The Deployment exceeded its progress deadline: the new image does not become ready.' },
          },
          {
            alert: 'StatefulSetRolloutStuck',
            // StatefulSets have no progress deadline: a rollout is stuck when the update
            // revision differs from the current one and no replica was updated for 15 minutes
            // (kubernetes-mixin's KubeStatefulSetUpdateNotRolledOut).
            expr: [
              `(max without (revision) (kube_statefulset_status_current_revision{namespace=~"${namespaces}"} unless kube_statefulset_status_update_revision{namespace=~"${namespaces}"})`,
              `  * (kube_statefulset_replicas{namespace=~"${namespaces}"} != kube_statefulset_status_replicas_updated{namespace=~"${namespaces}"}))`,
              `and (changes(kube_statefulset_status_replicas_updated{namespace=~"${namespaces}"}[15m]) == 0)`,
            ].join('\n'),
            for: '15m',
            labels: page,
            annotations: { summary: 'Rollout of {{ $labels.namespace }}/{{ $labels.statefulset }} is stuck', description: 'The StatefulSet has replicas on an old revision and made no progress for 15 minutes.' },
          },
        ],
      },
      {
        name: 'airflow',
        rules: [
          {
            alert: 'AirflowSchedulerHeartbeatMissing',
            expr: 'sum(rate(airflow_scheduler_heartbeat[5m])) == 0 or absent(airflow_scheduler_heartbeat)',
            for: '10m',
            labels: { ...page, deployment: d.name },
            annotations: { summary: `The Airflow scheduler of ${d.name} is not heartbeating`, description: 'No scheduler heartbeat reached the statsd exporter for 10 minutes: no task is being scheduled.' },
          },
          {
            alert: 'AirflowStatsdExporterDown',
            expr: 'up{job="airflow-statsd"} == 0',
            for: '5m',
            labels: warn,
            annotations: { summary: `The statsd exporter of ${d.name} cannot be scraped`, description: "Airflow's metrics are missing, and with them the Airflow alerts." },
          },
        ],
      },
    ],
  };
}

/** prometheus.yml of one deployment's pair. */
export function prometheusConfig(v: Values, d: AirflowDeployment): Record<string, unknown> {
  const p = v.prometheus;
  const ns = namespaceOf(d);
  const scrape: Array<Record<string, unknown>> = [
    { job_name: 'prometheus', static_configs: [{ targets: ['localhost:9090'] }] },
    { job_name: 'airflow-statsd', static_configs: [{ targets: [`${AIRFLOW_SERVICES.statsd}.${ns}.svc:9102`], labels: { namespace: ns } }] },
    {
      job_name: 'orrery',
      // Pods, not Services: each replica of router and sinks has its own counters.
      kubernetes_sd_configs: [{ role: 'pod', namespaces: { names: [v.orrery.namespace] }, selectors: [{ role: 'pod', label: 'app.kubernetes.io/name=orrery' }] }],
      relabel_configs: [
        { source_labels: ['__meta_kubernetes_pod_container_port_name'], action: 'keep', regex: 'http' },
        { source_labels: ['__meta_kubernetes_pod_phase'], action: 'drop', regex: 'Succeeded|Failed' },
        { source_labels: ['__meta_kubernetes_pod_label_app_kubernetes_io_component'], target_label: 'component' },
        { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
        { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
      ],
    },
  ];
  if (p.kubeStateMetrics) {
    scrape.push({
      job_name: 'kube-state-metrics',
      honor_labels: true,
      static_configs: [{ targets: [p.kubeStateMetrics] }],
      // Only our namespaces' series: the cluster's own are not this pair's business.
      metric_relabel_configs: [{ source_labels: ['namespace'], action: 'keep', regex: `${v.orrery.namespace}|${ns}` }],
    });
  }
  return {
    global: {
      scrape_interval: p.scrapeInterval,
      evaluation_interval: p.scrapeInterval,
      // Prometheus 3 expands ${VAR} in external labels: each replica names itself.
      external_labels: { deployment: d.name, replica: '${POD_NAME}' },
    },
    rule_files: ['/etc/prometheus/alerts.yml'],
    alerting: {
      // Both replicas send the same alerts; without the replica label they are identical
      // and Alertmanager sends one notification.
      alert_relabel_configs: [{ action: 'labeldrop', regex: 'replica' }],
      ...(p.alertmanagers.length > 0 ? { alertmanagers: [{ static_configs: [{ targets: p.alertmanagers }] }] } : {}),
    },
    scrape_configs: scrape,
  };
}

/** The pair itself, in the deployment's namespace. */
export function renderPrometheus(v: Values, d: AirflowDeployment): Manifest {
  const ns = namespaceOf(d);
  const p = v.prometheus;
  const l = labels('prometheus', d.name, 'monitoring');
  const data = { 'alerts.yml': toYaml(alertRules(v, d)), 'prometheus.yml': toYaml(prometheusConfig(v, d)) };
  const sa: ServiceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'prometheus', namespace: ns, labels: l.all } };
  const cm: ConfigMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'prometheus-config', namespace: ns, labels: l.all }, data };
  const svc: Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'prometheus', namespace: ns, labels: l.all },
    // Headless: each replica is queried (and federated) by its own name.
    spec: { clusterIP: 'None', selector: l.selector, ports: [{ name: 'web', port: 9090, targetPort: 'web' }] },
  };
  const sts: StatefulSet = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'prometheus', namespace: ns, labels: l.all },
    spec: {
      serviceName: 'prometheus',
      replicas: p.replicas,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: l.selector },
      template: {
        metadata: { labels: l.all, annotations: { 'checksum/prometheus-config': checksum(data) } },
        spec: {
          serviceAccountName: 'prometheus',
          securityContext: { runAsUser: 65534, runAsGroup: 65534, fsGroup: 65534, runAsNonRoot: true },
          // An HA pair on one node is not a pair: prefer different nodes.
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: l.selector } } }],
            },
          },
          containers: [
            {
              name: 'prometheus',
              image: v.images.prometheus,
              args: ['--config.file=/etc/prometheus/prometheus.yml', '--storage.tsdb.path=/prometheus', `--storage.tsdb.retention.time=${p.retention}`],
              env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
              ports: [{ name: 'web', containerPort: 9090 }],
              resources: resources(p.resources),
              securityContext: { ...restrictedContainer, readOnlyRootFilesystem: true },
              readinessProbe: httpProbe('/-/ready', 'web', { periodSeconds: 10, timeoutSeconds: 5 }),
              livenessProbe: httpProbe('/-/healthy', 'web', { periodSeconds: 15, timeoutSeconds: 5, failureThreshold: 5 }),
              // Replaying the WAL of a big TSDB takes a while: don't let liveness kill it.
              startupProbe: httpProbe('/-/ready', 'web', { periodSeconds: 10, failureThreshold: 60 }),
              volumeMounts: [
                { name: 'config', mountPath: '/etc/prometheus', readOnly: true },
                { name: 'data', mountPath: '/prometheus' },
              ],
            },
          ],
          volumes: [{ name: 'config', configMap: { name: 'prometheus-config' } }],
        },
      },
      volumeClaimTemplates: [claimTemplate('data', p.storage, p.storageClass)],
    },
  };
  const objects: Manifest['objects'] = [sa, cm, svc, sts];
  if (p.replicas > 1) {
    const pdb: PodDisruptionBudget = {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'prometheus', namespace: ns, labels: l.all },
      // A drain takes one of the pair at a time, never both.
      spec: { maxUnavailable: 1, selector: { matchLabels: l.selector } },
    };
    objects.push(pdb);
  }
  return { namespace: ns, component: 'prometheus', objects };
}

/**
 * Read access to Orrery's pods for every deployment's Prometheus (pod discovery), in
 * Orrery's namespace: one Role, one RoleBinding per deployment.
 */
export function renderPrometheusDiscovery(v: Values): Manifest {
  const ns = v.orrery.namespace;
  const l = labels('prometheus', 'orrery', 'monitoring');
  const role: Role = {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name: 'prometheus-discovery', namespace: ns, labels: l.all },
    // get/list/watch pods: what Prometheus's pod discovery reads, nothing else.
    rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
  };
  const bindings: RoleBinding[] = v.deployments.map((d) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: `prometheus-${d.name}`, namespace: ns, labels: l.all },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'prometheus-discovery' },
    subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: namespaceOf(d) }],
  }));
  return { namespace: ns, component: 'prometheus-discovery', objects: [role, ...bindings] };
}
