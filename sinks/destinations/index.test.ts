import { describe, expect, it } from 'vitest';
import type { DestinationConfig } from '../../core/control-plane.ts';
import { DESTINATIONS } from './index.ts';
import { destinationSettings } from './types.ts';

/** One destination of each type as users write it: the common fields beside the type's own settings. */
const WRITTEN: DestinationConfig[] = [
  { id: 'hook', type: 'webhook', name: 'Hook', enabled: true, url: 'https://hooks.example.com/x' },
  { id: 'amp', type: 'amplitude', name: 'Amplitude', enabled: true, apiKey: 'amp-key' },
  { id: 'mp', type: 'mixpanel', enabled: true, projectId: 3141592, username: 'orrery.sa', secret: 's3cr3t' },
  { id: 'ga', type: 'ga4', enabled: false, measurementId: 'G-ABC123XYZ9', apiSecret: 'mp-secret' },
  { id: 'chat', type: 'slack', enabled: true, webhookUrl: 'https://hooks.slack.com/services/T/B/x' },
  { id: 'dw', type: 'warehouse', enabled: true, databaseUrl: 'postgres://u:p@db.example.com:5432/dw' },
];

describe('destination settings', () => {
  it('covers every type', () => {
    expect(WRITTEN.map((d) => d.type).sort()).toEqual([...DESTINATIONS.keys()].sort());
  });

  it.each(WRITTEN)('$type: its settings pass its schema once id, type, name and enabled are set aside', (d) => {
    const module = DESTINATIONS.get(d.type)!;
    expect(module.configSchema.safeParse(destinationSettings(d)).error?.issues).toBeUndefined();
    expect(destinationSettings(d)).not.toHaveProperty('id');
  });
});
