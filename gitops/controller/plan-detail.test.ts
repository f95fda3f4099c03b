import { describe, expect, it } from 'vitest';
import { planDetail } from './sync.ts';

describe('planDetail', () => {
  const rev = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12';
  it("names the objects the deploy's commit changes, and the revision's plan", () => {
    expect(planDetail(rev, ['ns_app_apps_Deployment'], { apply: ['a', 'b', 'c'], prune: ['d'] })).toBe(
      'plan at ab12cd34ef56, nothing applied (no cluster): this commit changes 1 object (ns_app_apps_Deployment); the revision has 3 to apply, 1 to prune',
    );
  });
  it('lists at most eight, and says how many more', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `o${i}`);
    expect(planDetail(rev, ids, { apply: ids, prune: [] })).toContain('changes 10 objects (o0, o1, o2, o3, o4, o5, o6, o7, and 2 more)');
    expect(planDetail(rev, [], { apply: [], prune: [] })).toContain('changes 0 objects; the revision');
  });
});
