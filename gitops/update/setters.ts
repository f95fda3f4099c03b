import { isPair, isScalar, isSeq, parse as parseYaml, parseAllDocuments, visit, type Node, type Scalar } from 'yaml';
import { InputError } from '../../core/errors.ts';

/**
 * Image setters, as Flux's image-automation does them: a field in the manifests YAML is
 * marked with a comment naming the policy that drives it, and only marked fields change.
 *
 *   image: registry.example.com/airflow:1.2.3 # {"$imagepolicy": "airflow"}
 *   tag: 1.2.3                                # {"$imagepolicy": "airflow:tag"}
 *   repository: registry.example.com/airflow  # {"$imagepolicy": "airflow:name"}
 *   digest: sha256:…                          # {"$imagepolicy": "airflow:digest"}
 *
 * The YAML is parsed with the yaml package's Document API to find the marked scalars, and
 * then only their bytes are replaced in the original text, so comments, formatting, key
 * order and every other byte survive. Pure: text in, text out.
 */

export interface ImageRef {
  repository: string;
  tag: string;
  digest?: string | undefined;
  /** Pin by digest: the full-image form becomes `repo:tag@sha256:…`. */
  pinDigest?: boolean;
}

export interface SetterChange {
  /** Dotted path of the field, sequence items by index: `spec.template.spec.containers.0.image`. */
  field: string;
  policy: string;
  kind: 'image' | 'tag' | 'name' | 'digest';
  from: string;
  to: string;
}

const MARKER = /\{\s*"\$imagepolicy"\s*:\s*"([^"]+)"\s*\}/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const REPOSITORY = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/** Refuses anything that is not a plain image reference: nothing else can reach the YAML. */
export function assertImageRef(ref: ImageRef): void {
  if (ref.repository.length > 255 || !REPOSITORY.test(ref.repository)) throw new InputError('invalid_reference', `not an image repository: ${JSON.stringify(ref.repository)}`);
  if (!TAG.test(ref.tag)) throw new InputError('invalid_reference', `not an image tag: ${JSON.stringify(ref.tag)}`);
  if (ref.digest !== undefined && !DIGEST.test(ref.digest)) throw new InputError('invalid_reference', `not a digest: ${JSON.stringify(ref.digest)}`);
}

function valueFor(kind: SetterChange['kind'], ref: ImageRef): string | undefined {
  switch (kind) {
    case 'image':
      return `${ref.repository}:${ref.tag}${ref.pinDigest && ref.digest ? `@${ref.digest}` : ''}`;
    case 'tag':
      return ref.tag;
    case 'name':
      return ref.repository;
    case 'digest':
      return ref.digest;
  }
}

/** Renders a string scalar in the style the original used, quoting only when YAML needs it. */
function render(original: Scalar, value: string): string {
  if (original.type === 'QUOTE_SINGLE') return `'${value.replace(/'/g, "''")}'`;
  if (original.type === 'QUOTE_DOUBLE') return JSON.stringify(value);
  // A plain scalar stays plain when YAML reads it back as the same string (1.4.0 does;
  // 1.10 would read as the number 1.1, so it gets quotes).
  return /^[A-Za-z0-9_./@-][A-Za-z0-9_./:@-]*$/.test(value) && parseYaml(value) === value ? value : JSON.stringify(value);
}

function fieldPath(path: ReadonlyArray<unknown>, node: Node): string {
  const parts: string[] = [];
  const chain = [...path, node];
  for (let i = 0; i < chain.length; i++) {
    const n = chain[i];
    if (isPair(n) && isScalar(n.key)) parts.push(String(n.key.value));
    else if (isSeq(n) && i + 1 < chain.length) parts.push(String(n.items.indexOf(chain[i + 1] as never)));
  }
  return parts.join('.');
}

/** Whether `field` matches an allow-list pattern with `*` for one segment and `**` for any. */
export function fieldAllowed(field: string, patterns: readonly string[] | undefined): boolean {
  if (!patterns) return true;
  const parts = field.split('.');
  return patterns.some((p) => matchParts(p.split('.'), parts));
}

function matchParts(pattern: string[], parts: string[]): boolean {
  if (pattern.length === 0) return parts.length === 0;
  const [head, ...rest] = pattern;
  if (head === '**') return rest.length === 0 || parts.some((_, i) => matchParts(rest, parts.slice(i)));
  if (parts.length === 0) return false;
  return (head === '*' || head === parts[0]) && matchParts(rest, parts.slice(1));
}

/**
 * Sets the fields marked for `policy` to `ref`. Returns the new text and what changed
 * (nothing when every marked field already holds the value). Throws on a reference that is
 * not valid, or on a YAML file that does not parse.
 *
 * @example applySetters(text, 'airflow', { repository: 'registry.example.com/airflow', tag: '1.3.0' })
 */
export function applySetters(
  text: string,
  policy: string,
  ref: ImageRef,
  opts: { allowFields?: readonly string[] } = {},
): { text: string; changes: SetterChange[] } {
  assertImageRef(ref);
  const docs = parseAllDocuments(text, { keepSourceTokens: false });
  if (!Array.isArray(docs)) throw new InputError('invalid_yaml', 'not a YAML stream');
  const edits: Array<{ start: number; end: number; value: string; change: SetterChange }> = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new InputError('invalid_yaml', `the manifest does not parse: ${doc.errors[0]!.message}`);
    visit(doc, {
      Scalar(_key, node, path) {
        const marker = node.comment ? MARKER.exec(node.comment) : null;
        if (!marker || !node.range) return;
        const [name, suffix = 'image'] = marker[1]!.split(':');
        if (name !== policy) return;
        const kind = ({ image: 'image', tag: 'tag', name: 'name', digest: 'digest' } as const)[suffix as 'image'];
        if (!kind) return;
        const to = valueFor(kind, ref);
        if (to === undefined || node.value === to) return;
        const field = fieldPath(path, node);
        if (!fieldAllowed(field, opts.allowFields)) return;
        edits.push({
          start: node.range[0],
          end: node.range[1],
          value: render(node, to),
          change: { field, policy, kind, from: String(node.value), to },
        });
      },
    });
  }
  let out = text;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.value + out.slice(e.end);
  return { text: out, changes: edits.map((e) => e.change) };
}

/** The values currently in the fields marked for `policy` (to compare a push against). */
export function currentValues(text: string, policy: string): Array<{ kind: SetterChange['kind']; value: string }> {
  const found: Array<{ kind: SetterChange['kind']; value: string }> = [];
  for (const doc of parseAllDocuments(text) as ReturnType<typeof parseAllDocuments> & unknown[]) {
    visit(doc, {
      Scalar(_k, node) {
        const marker = node.comment ? MARKER.exec(node.comment) : null;
        if (!marker) return;
        const [name, suffix = 'image'] = marker[1]!.split(':');
        if (name === policy) found.push({ kind: suffix as SetterChange['kind'], value: String(node.value) });
      },
    });
  }
  return found;
}
