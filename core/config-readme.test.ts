import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_MAP, loadConfig } from './config.ts';

/**
 * The README's configuration table against the config schema (issue #20): every variable
 * the config reads is a row with its config key and its default, and every row names
 * variables that exist, so the two cannot drift apart.
 */
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function tableRows(): Array<{ envs: string[]; keys: string; defaults: string }> {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| env | config key | default |'));
  expect(start, 'the configuration table in README.md').toBeGreaterThan(0);
  const rows: Array<{ envs: string[]; keys: string; defaults: string }> = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const [envCell = '', keys = '', ...rest] = line.slice(1, -1).split(' | ');
    rows.push({ envs: [...envCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1]!), keys, defaults: rest.join(' | ') });
  }
  return rows;
}

describe('README configuration table', () => {
  const rows = tableRows();
  const defaults = loadConfig({ env: {} }) as unknown as Record<string, unknown>;
  const at = (path: readonly string[]) => path.reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], defaults);

  it.each(ENV_MAP.map((e) => [e.env, e] as const))('%s has a row with its config key and default', (env, e) => {
    const row = rows.find((r) => r.envs.includes(env));
    expect(row, `no row for ${env}`).toBeDefined();
    const key = e.path.join('.');
    expect(row!.keys.includes(`\`${key}\``) || row!.keys.includes(`\`${e.path.slice(0, -1).join('.')}.*\``), `${env}: the row names \`${key}\``).toBe(true);
    const value = at(e.path);
    if (typeof value === 'number' || typeof value === 'string') expect(row!.defaults, `${env}: the default ${value}`).toContain(String(value));
  });

  it('names no variable the config does not read', () => {
    const known = new Set(ENV_MAP.map((e) => e.env));
    expect(rows.flatMap((r) => r.envs).filter((env) => !known.has(env))).toEqual([]);
  });
});
