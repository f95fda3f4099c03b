import { describe, expect, it } from 'vitest';
import { revertText } from './revert.ts';

const before = `kind: Deployment
metadata: { name: web }
spec:
  template:
    spec:
      containers:
        - image: app:1.0.0 # {"$imagepolicy": "app"}
        - image: sidecar:3 # {"$imagepolicy": "sidecar"}
`;
const after = before.replace('app:1.0.0', 'app:1.1.0');

describe('revertText', () => {
  it('restores the previous content when nothing changed since', () => {
    expect(revertText(after, before, after)).toBe(before);
  });

  it('undoes only the reverted hunk when a later commit changed another line', () => {
    const later = after.replace('sidecar:3', 'sidecar:4');
    expect(revertText(after, before, later)).toBe(before.replace('sidecar:3', 'sidecar:4'));
  });

  it('keeps lines a later commit added around the reverted one', () => {
    const later = after.replace('spec:\n  template', 'spec:\n  replicas: 3\n  template') + '---\nkind: ConfigMap\n';
    expect(revertText(after, before, later)).toBe(before.replace('spec:\n  template', 'spec:\n  replicas: 3\n  template') + '---\nkind: ConfigMap\n');
  });

  it('is a conflict when a later commit changed the same line again', () => {
    expect(revertText(after, before, after.replace('app:1.1.0', 'app:1.2.0'))).toBeUndefined();
  });

  it('undoes added and removed lines, at the start and the end of the file too', () => {
    const base = 'b\nc\n';
    const theirs = 'a\nb\nc\nd\n';
    expect(revertText(base, theirs, 'b\nx\nc\n')).toBe('a\nb\nx\nc\nd\n');
    expect(revertText(theirs, base, 'a\nb\nc\nd\ne\n')).toBe('b\nc\ne\n');
  });

  it('is a conflict when the place of an insertion was edited', () => {
    expect(revertText('b\nc\n', 'b\nnew\nc\n', 'b\nother\nc\n')).toBeUndefined();
  });

  it('keeps a file without a final newline as it was', () => {
    expect(revertText('x: 2', 'x: 1', 'x: 2')).toBe('x: 1');
    expect(revertText('a\nx: 2', 'a\nx: 1', 'z\na\nx: 2')).toBe('z\na\nx: 1');
  });
});
