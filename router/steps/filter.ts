import type { Condition, Filter } from '../../core/control-plane.ts';
import type { Envelope } from '../../core/envelope.ts';
import { getPath, hasPath } from '../paths.ts';

/**
 * Whether a route's filter keeps the event; the reason when it does not. Types and event
 * names are allow-lists; every `where` condition must hold.
 */
export function applyFilter(env: Envelope, filter: Filter | undefined): { keep: true } | { keep: false; reason: string } {
  if (!filter) return { keep: true };
  if (filter.types && !filter.types.includes(env.type)) return { keep: false, reason: 'filtered_type' };
  if (filter.events && env.type === 'track' && !filter.events.includes(env.event ?? '')) return { keep: false, reason: 'filtered_event' };
  for (const condition of filter.where ?? []) {
    if (!holds(env, condition)) return { keep: false, reason: 'filtered_condition' };
  }
  return { keep: true };
}

const regexCache = new Map<string, RegExp>();

function holds(env: Envelope, c: Condition): boolean {
  const value = getPath(env, c.field);
  switch (c.op) {
    case 'eq':
      return deepEqual(value, c.value);
    case 'neq':
      return !deepEqual(value, c.value);
    case 'in':
      return c.value.some((v) => deepEqual(value, v));
    case 'nin':
      return !c.value.some((v) => deepEqual(value, v));
    case 'gt':
      return typeof value === 'number' && value > c.value;
    case 'gte':
      return typeof value === 'number' && value >= c.value;
    case 'lt':
      return typeof value === 'number' && value < c.value;
    case 'lte':
      return typeof value === 'number' && value <= c.value;
    case 'exists':
      return hasPath(env, c.field) === c.value;
    case 'contains':
      return typeof value === 'string' ? value.includes(c.value) : Array.isArray(value) && value.includes(c.value);
    case 'matches': {
      let re = regexCache.get(c.value);
      if (!re) regexCache.set(c.value, (re = new RegExp(c.value)));
      return typeof value === 'string' && re.test(value);
    }
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
