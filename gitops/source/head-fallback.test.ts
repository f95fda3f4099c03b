import { describe, expect, it } from 'vitest';
import { withHeadSymref } from './head-fallback.ts';

const pkt = (s: string) => `${(Buffer.byteLength(s) + 4).toString(16).padStart(4, '0')}${s}`;
const OID = 'a'.repeat(40);
const advert = (...refs: string[]) => Buffer.from(pkt('# service=git-upload-pack\n') + '0000' + refs.map(pkt).join('') + '0000');

describe('withHeadSymref', () => {
  it('names the configured branch as HEAD when the advertisement names none (HEAD -> missing master)', () => {
    const out = withHeadSymref(advert(`${OID} refs/heads/main\0multi_ack side-band-64k agent=git/2.39.5\n`), 'main').toString();
    expect(out).toBe(advert(`${OID} refs/heads/main\0multi_ack side-band-64k agent=git/2.39.5 symref=HEAD:refs/heads/main\n`).toString());
  });

  it('leaves an advertisement with a HEAD line alone', () => {
    const a = advert(`${OID} HEAD\0multi_ack symref=HEAD:refs/heads/master\n`, `${OID} refs/heads/master\n`);
    expect(withHeadSymref(a, 'main').equals(a)).toBe(true);
  });

  it('leaves an advertisement whose capabilities name HEAD alone', () => {
    const a = advert(`${OID} refs/heads/main\0multi_ack symref=HEAD:refs/heads/trunk\n`);
    expect(withHeadSymref(a, 'main').equals(a)).toBe(true);
  });

  it('passes on what it does not understand', () => {
    for (const junk of [Buffer.from('not pkt-lines'), Buffer.from('0032short'), Buffer.alloc(0)]) expect(withHeadSymref(junk, 'main').equals(junk)).toBe(true);
  });
});
