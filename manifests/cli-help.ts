// The help and options of `orrery render`, apart from the renderer: the CLI reads them for
// every command, and `orrery start` must not load the renderer to print its help.

/** The options `orrery render` adds to the CLI's parseArgs. */
export const RENDER_OPTIONS = {
  values: { type: 'string', short: 'f' },
  out: { type: 'string', short: 'o' },
  'bootstrap-out': { type: 'string' },
  target: { type: 'string' },
  deployment: { type: 'string' },
  prune: { type: 'boolean' },
  check: { type: 'boolean' },
} as const;

/** Help text for `orrery render`. */
export const RENDER_HELP = {
  summary: 'Render Kubernetes manifests (or a compose file, or Marathon apps) from a values file',
  usage: 'orrery render <values.yaml> | --values <values.yaml> [--out dir] [--bootstrap-out dir] [--target kubernetes|compose|marathon] [--deployment name] [--prune] [--check]',
  help: `Renders every Airflow deployment and Orrery's own services from one values file
(see manifests/README.md). Deterministic: the same values give the same bytes.
  --values file   the values file (or give it as the argument)
  --out dir       write one file per namespace and component (kubernetes), the compose
                  file and its configs, or marathon.json and orrery.yaml (marathon);
                  without it, print one multi-document YAML (or the compose file, or
                  marathon.json)
  --bootstrap-out dir
                  where the GitOps controller's own RBAC goes, for an admin to apply
                  once (default: bootstrap/ beside --out, outside the synced tree)
  --target t      kubernetes (default), compose (Docker Compose / docker stack deploy) or
                  marathon (one Marathon group for DC/OS: dcos marathon group add)
  --deployment n  compose: the Airflow deployment to include (default: the first)
  --prune         delete .yaml files under --out that the render no longer produces
  --check         write nothing; exit 1 when the files under --out are not up to date`,
};
