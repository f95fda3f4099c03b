/**
 * Dotted field paths (`properties.plan`, `context.ip`) over plain JSON objects. Pure.
 * `__proto__`, `constructor` and `prototype` are refused: paths come from user config.
 */

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

function split(path: string): string[] {
  const parts = path.split('.');
  if (parts.some((p) => p === '' || FORBIDDEN.has(p))) throw new RangeError(`invalid field path "${path}"`);
  return parts;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function getPath(obj: unknown, path: string): unknown {
  let node: unknown = obj;
  for (const part of split(path)) {
    if (!isObject(node) || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

/** Whether the path exists (a present `null` counts). */
export function hasPath(obj: unknown, path: string): boolean {
  let node: unknown = obj;
  for (const part of split(path)) {
    if (!isObject(node) || !Object.hasOwn(node, part)) return false;
    node = node[part];
  }
  return true;
}

/**
 * Returns a copy of `obj` with `path` set, copying only the objects along the path, so the
 * input (shared by every destination of one event) is never changed.
 */
export function setPath<T extends Record<string, unknown>>(obj: T, path: string, value: unknown): T {
  const [head, ...rest] = split(path);
  const copy: Record<string, unknown> = { ...obj };
  if (rest.length === 0) copy[head!] = value;
  else copy[head!] = setPath(isObject(obj[head!]) ? (obj[head!] as Record<string, unknown>) : {}, rest.join('.'), value);
  return copy as T;
}

/** Returns a copy of `obj` without `path` (unchanged when it is absent). */
export function deletePath<T extends Record<string, unknown>>(obj: T, path: string): T {
  const [head, ...rest] = split(path);
  if (!Object.hasOwn(obj, head!)) return obj;
  const copy: Record<string, unknown> = { ...obj };
  if (rest.length === 0) delete copy[head!];
  else if (isObject(obj[head!])) copy[head!] = deletePath(obj[head!] as Record<string, unknown>, rest.join('.'));
  return copy as T;
}
