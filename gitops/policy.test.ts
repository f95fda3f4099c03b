import { describe, expect, it } from 'vitest';
import { ImagePolicy } from '../core/gitops-config.ts';
import { decide, policiesFor } from './policy.ts';

const policy = (tags: unknown) => ImagePolicy.parse({ name: 'airflow', image: 'registry.example.com/airflow', tags });
const push = (tag: string) => ({ repository: 'registry.example.com/airflow', tag });

describe('image policy decisions', () => {
  it('semver: in range and newer than the current tag', () => {
    const p = policy({ semver: '>=1.0.0 <2.0.0' });
    expect(decide(p, push('1.3.0'), '1.2.9')).toEqual({ update: true });
    expect(decide(p, push('v1.3.0'), '1.2.9')).toEqual({ update: true });
    expect(decide(p, push('1.2.0'), '1.2.9')).toMatchObject({ update: false });
    expect(decide(p, push('2.0.0'), '1.2.9')).toMatchObject({ update: false, reason: expect.stringContaining('outside') });
    expect(decide(p, push('latest'), '1.2.9')).toMatchObject({ update: false, reason: expect.stringContaining('not a semantic version') });
    expect(decide(p, push('1.4.0-rc.1'), '1.2.9')).toMatchObject({ update: false });
    expect(decide(p, push('1.0.0'), undefined)).toEqual({ update: true });
  });

  it('regex with extraction orders by the extracted part', () => {
    const p = policy({ regex: '^main-([0-9]+)-[a-f0-9]+$', extract: '$1', order: 'numeric' });
    expect(decide(p, push('main-120-abc123'), 'main-99-fff000')).toEqual({ update: true });
    expect(decide(p, push('main-98-abc123'), 'main-99-fff000')).toMatchObject({ update: false });
    expect(decide(p, push('feature-1-abc'), 'main-99-fff000')).toMatchObject({ update: false, reason: expect.stringContaining('does not match') });
  });

  it('newest: any new tag, by arrival', () => {
    const p = policy({ newest: true });
    expect(decide(p, push('abc'), 'xyz')).toEqual({ update: true });
    expect(decide(p, push('xyz'), 'xyz')).toMatchObject({ update: false });
  });

  it('a push drives every policy for its repository', () => {
    const a = policy({ newest: true });
    const b = ImagePolicy.parse({ name: 'workers', image: 'registry.example.com/airflow' });
    const c = ImagePolicy.parse({ name: 'router', image: 'registry.example.com/router' });
    expect(policiesFor([a, b, c], push('1')).map((p) => p.name)).toEqual(['airflow', 'workers']);
  });
});
