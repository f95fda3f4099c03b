import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { IncomingMessage } from '../core/bus/types.ts';
import { ControlPlaneConfig } from '../core/control-plane.ts';
import { routeEvent } from './pipeline.ts';

/**
 * Golden cases: each file in testdata/routing holds a config (or uses _base.yaml), an
 * event, and the expected outcome. UPDATE_GOLDEN=1 rewrites the expectations; review the
 * diff before committing it.
 */
const DIR = new URL('./testdata/routing/', import.meta.url);
const base = parse(readFileSync(new URL('_base.yaml', DIR), 'utf8'));
const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && !f.startsWith('_'));

function message(value: unknown): IncomingMessage {
  return { topic: 'orrery.events.raw', partition: 0, offset: '0', key: null, value: Buffer.from(JSON.stringify(value)), headers: {}, timestamp: 0 };
}

describe('router golden cases', () => {
  it('has cases', () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  for (const file of files) {
    const url = new URL(file, DIR);
    const doc = parse(readFileSync(url, 'utf8'));
    it(`${file.replace('.yaml', '')}: ${doc.description}`, () => {
      const snapshot = { ...ControlPlaneConfig.parse(doc.config ?? base), version: 7 };
      const outcome = routeEvent(message(doc.event), snapshot, new Set(doc.seen ?? []), '2026-11-27T12:00:02.000Z');
      if (process.env.UPDATE_GOLDEN) {
        writeFileSync(url, stringify({ ...doc, expected: outcome }, { lineWidth: 0 }));
        return;
      }
      expect(doc.expected, `${file} has no expected outcome: run with UPDATE_GOLDEN=1 and review`).toBeDefined();
      expect(outcome).toEqual(doc.expected);
    });
  }
});
