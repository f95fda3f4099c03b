import { Document, Pair, Scalar, YAMLMap, YAMLSeq, type Node } from 'yaml';

/**
 * The one YAML writer of the manifests: deterministic (keys sorted, Kubernetes' usual
 * head keys first), multi-line strings as block literals, and the GitOps image policy
 * marker as a line comment on every image we own:
 *
 *   image: registry.example.com/team-a/airflow:3.1.0 # {"$imagepolicy": "team-a-airflow"}
 *
 * The marker travels with the object, not with the text: {@link markImage} tags the
 * object that holds the `image` key (a container, a compose service) with a hidden
 * symbol property, which neither the Kubernetes model types nor JSON see, and the writer
 * turns it into the comment. So no later step can move an image away from its policy.
 */

const POLICY = Symbol('imagepolicy');

/**
 * Marks `holder.image` for the GitOps policy `policy`; returns `holder` (same type) so it
 * reads inline: `containers: [markImage({ name, image }, 'team-a-airflow')]`.
 */
export function markImage<T extends { image?: string | undefined }>(holder: T, policy: string): T {
  Object.defineProperty(holder, POLICY, { value: policy, enumerable: false });
  return holder;
}

/** The policy {@link markImage} put on an object, if any. */
export function imagePolicyOf(holder: object): string | undefined {
  return (holder as { [POLICY]?: string })[POLICY];
}

/**
 * Keys that read best first, in this order (Kubernetes' head, a list item's name, a
 * compose file's version, a scrape job's or alert's name); every other key is sorted.
 */
const HEAD = ['apiVersion', 'kind', 'metadata', 'name', 'namespace', 'version', 'image', 'job_name', 'alert', 'match'];

function compareKeys(a: string, b: string): number {
  const ia = HEAD.indexOf(a);
  const ib = HEAD.indexOf(b);
  if (ia !== -1 || ib !== -1) return (ia === -1 ? HEAD.length : ia) - (ib === -1 ? HEAD.length : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}

function toNode(value: unknown, path: string): Node {
  if (value === null) return new Scalar(null);
  if (Array.isArray(value)) {
    const seq = new YAMLSeq();
    value.forEach((item, i) => {
      if (item === undefined) throw new TypeError(`undefined item at ${path}.${i}`);
      seq.items.push(toNode(item, `${path}.${i}`));
    });
    return seq;
  }
  if (typeof value === 'object') {
    const map = new YAMLMap();
    const policy = imagePolicyOf(value);
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => compareKeys(a, b));
    for (const [k, v] of entries) {
      const node = toNode(v, `${path}.${k}`);
      if (policy && k === 'image') {
        if (!(node instanceof Scalar) || typeof node.value !== 'string') throw new TypeError(`marked image at ${path} is not a string`);
        node.comment = ` {"$imagepolicy": "${policy}"}`;
      }
      map.items.push(new Pair(new Scalar(k), node));
    }
    return map;
  }
  if (typeof value === 'string') {
    const s = new Scalar(value);
    // Config files in ConfigMaps stay readable (and diffable) as blocks. Trailing spaces
    // on a line cannot be kept by a block literal, so those stay quoted.
    if (value.includes('\n') && !/[ \t]\n/.test(value)) s.type = 'BLOCK_LITERAL';
    return s;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`non-finite number at ${path}`);
    return new Scalar(value);
  }
  throw new TypeError(`cannot write ${typeof value} at ${path}`);
}

/** One object as a YAML document text (no `---`). */
export function toYaml(value: unknown): string {
  const doc = new Document();
  doc.contents = toNode(value, '') as never;
  // lineWidth 0: never fold long strings, so an image line is always one line.
  return doc.toString({ lineWidth: 0, minContentWidth: 0 });
}

/** Objects as one multi-document stream, each document opened by `---`. */
export function toYamlStream(values: readonly unknown[]): string {
  return values.map((v) => `---\n${toYaml(v)}`).join('');
}
