import { parseAllDocuments } from 'yaml';
import { applyStage, objectId, type ObjectRef } from './inventory.ts';

/** Parses the manifests into objects, in apply order; a document that is not an object is a config error. */
export function parseManifests(files: Map<string, string>): Array<ObjectRef & Record<string, unknown>> {
  const objects: Array<ObjectRef & Record<string, unknown>> = [];
  for (const [file, text] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    for (const doc of parseAllDocuments(text) as unknown as Array<{ errors: Array<{ message: string }>; toJS(): unknown }>) {
      if (doc.errors.length > 0) throw Object.assign(new Error(`${file}: ${doc.errors[0]!.message}`), { retriable: false });
      const o = doc.toJS() as (ObjectRef & Record<string, unknown>) | null;
      if (o === null || o === undefined) continue;
      // A YAML document that is not a Kubernetes object at all (a values file kept beside
      // the manifests) is not ours to apply; one that claims a kind must be complete.
      if (typeof o === 'object' && !('apiVersion' in o) && !('kind' in o)) continue;
      if (typeof o !== 'object' || !o.apiVersion || !o.kind || !o.metadata?.name) {
        throw Object.assign(new Error(`${file}: every document needs apiVersion, kind and metadata.name`), { retriable: false });
      }
      objects.push(o);
    }
  }
  return objects.sort((a, b) => applyStage(a.kind) - applyStage(b.kind));
}

/**
 * The objects whose definition differs between the two sides of a commit's files (added,
 * removed or edited), by inventory id. A file that does not parse counts for nothing.
 */
export function changedObjects(files: ReadonlyArray<{ file: string; before: string | undefined; after: string | undefined }>): Set<string> {
  const parse = (file: string, text: string | undefined) => {
    if (text === undefined || !/\.ya?ml$/.test(file)) return new Map<string, string>();
    try {
      return new Map(parseManifests(new Map([[file, text]])).map((o) => [objectId(o), JSON.stringify(o)]));
    } catch {
      return new Map<string, string>();
    }
  };
  const out = new Set<string>();
  for (const f of files) {
    const [before, after] = [parse(f.file, f.before), parse(f.file, f.after)];
    for (const id of new Set([...before.keys(), ...after.keys()])) if (before.get(id) !== after.get(id)) out.add(id);
  }
  return out;
}
