/**
 * The text side of a revert, as `git revert` does it: a three-way merge whose base is the
 * file as the reverted commit left it, "theirs" the file before that commit, and "ours"
 * the file at the tip. The commit's own hunks are undone; what later commits changed
 * elsewhere in the file stays. Pure.
 */

/** Lines with their endings kept, so that joining them gives the text back byte for byte. */
function lines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/** Above this many cells the LCS table is not worth it: only an untouched file is reverted. */
const MAX_LCS_CELLS = 4_000_000;

/** For each line of `a`, the index of its partner in `b` in a longest common subsequence, or -1. */
function matchLines(a: string[], b: string[]): number[] | undefined {
  const n = a.length;
  const m = b.length;
  if ((n + 1) * (m + 1) > MAX_LCS_CELLS) return undefined;
  // suffix[i][j]: LCS length of a[i..] and b[j..], in one flat array.
  const w = m + 1;
  const suffix = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      suffix[i * w + j] = a[i] === b[j] ? suffix[(i + 1) * w + j + 1]! + 1 : Math.max(suffix[(i + 1) * w + j]!, suffix[i * w + j + 1]!);
    }
  }
  const match = new Array<number>(n).fill(-1);
  for (let i = 0, j = 0; i < n && j < m; ) {
    if (a[i] === b[j]) match[i++] = j++;
    else if (suffix[(i + 1) * w + j]! >= suffix[i * w + j + 1]!) i++;
    else j++;
  }
  return match;
}

/** The hunks that turn `a` into `b`: a[start, end) is replaced by `lines`. */
function hunks(a: string[], b: string[], match: number[]): Array<{ start: number; end: number; lines: string[] }> {
  const out: Array<{ start: number; end: number; lines: string[] }> = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && match[i] === j) {
      i++;
      j++;
      continue;
    }
    const start = i;
    while (i < a.length && match[i] === -1) i++;
    const nextJ = i < a.length ? match[i]! : b.length;
    out.push({ start, end: i, lines: b.slice(j, nextJ) });
    j = nextJ;
  }
  return out;
}

/**
 * `ours` with the change from `theirs` to `base` undone, or undefined when that change
 * overlaps a later one (a conflict, which a person has to resolve).
 *
 * @example revertText('image: app:2\n', 'image: app:1\n', 'image: app:2\n') // 'image: app:1\n'
 */
export function revertText(base: string, theirs: string, ours: string): string | undefined {
  if (ours === base) return theirs;
  const [b, t, o] = [lines(base), lines(theirs), lines(ours)];
  const toTheirs = matchLines(b, t);
  const toOurs = matchLines(b, o);
  if (!toTheirs || !toOurs) return undefined;
  const result = [...o];
  // Last hunk first, so that the indices of the earlier ones still hold.
  for (const h of hunks(b, t, toTheirs).reverse()) {
    // The hunk's base lines must all still be in ours, side by side; so must the line
    // before an insertion and the one after it, or we cannot tell where it goes.
    const from = h.start === h.end ? h.start - 1 : h.start;
    const to = h.start === h.end ? h.end + 1 : h.end;
    let at: number | undefined;
    for (let k = Math.max(from, 0); k < Math.min(to, b.length); k++) {
      const partner = toOurs[k]!;
      if (partner === -1) return undefined;
      if (at === undefined) at = partner - (k - Math.max(from, 0));
      else if (partner !== at + (k - Math.max(from, 0))) return undefined;
    }
    // Where the hunk's base lines start in ours.
    let oursStart: number;
    if (h.start < h.end) oursStart = at!;
    else if (h.start > 0) oursStart = toOurs[h.start - 1]! + 1;
    else oursStart = b.length > 0 ? toOurs[0]! : 0;
    result.splice(oursStart, h.end - h.start, ...h.lines);
  }
  return result.join('');
}
