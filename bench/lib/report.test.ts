import { describe, expect, it } from 'vitest';
import { fmtRatio, fmtSummary, row, table, type ScenarioReport } from './report.ts';
import { summarize } from './stats.ts';

describe('bench report', () => {
  it('ratios keep two decimals, and two significant digits when tiny (a time against a polling interval)', () => {
    expect([1.234, 0.5, 0.1, 0.0833, 0.004, 0].map(fmtRatio)).toEqual(['1.23', '0.50', '0.10', '0.083', '0.0040', '0.00']);
  });

  it('a baseline that is one published figure shows no spread, and the per-run ratios still come out', () => {
    const published = summarize([60_000, 60_000, 60_000]);
    expect(fmtSummary(published)).toBe('60.0k');
    expect(fmtSummary(summarize([212, 384, 241]))).toBe('241 (212–384)');
    const r = row('webhook→commit pushed', 'ms', summarize([212, 384, 241]), { name: 'Flux', summary: published }, { on: 'orrery', op: '<', value: 2_000 });
    expect(r).toMatchObject({ met: true, runRatios: { min: 212 / 60_000, max: 384 / 60_000 } });
    const report = { scenario: 'gitops', metrics: [r] } as unknown as ScenarioReport;
    expect(table([report]).split('\n')[2]).toContain('| 0.0040× (0.0035–0.0064) |');
  });
});
