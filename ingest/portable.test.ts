import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The ingest app must run on any fetch runtime (serverless, edge), so nothing it imports,
 * directly or through our own modules, may be Node-only. This walks the real import graph
 * of ingest/app.ts.
 */
const NODE_ONLY = /^(node:|fs$|path$|crypto$|stream$|http$|net$|os$|child_process$|pino$|prom-client$|kafkajs$|pg$|ioredis$|@hono\/node-server)/;
const NODE_GLOBALS = /\b(Buffer|process|__dirname|require)\s*[.(]/;

function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (graph.has(file)) continue;
    const source = readFileSync(file, 'utf8');
    // `import type` is erased at run time, so only value imports count.
    const specs = [...source.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
    graph.set(file, specs);
    for (const s of specs) if (s.startsWith('.')) queue.push(resolve(dirname(file), s));
  }
  return graph;
}

describe('ingest app portability', () => {
  const entry = fileURLToPath(new URL('./app.ts', import.meta.url));
  const graph = importGraph(entry);

  it('walks more than the entry file', () => {
    expect(graph.size).toBeGreaterThan(3);
  });

  it('imports no Node-only module anywhere in its graph', () => {
    const offenders = [...graph].flatMap(([file, specs]) => specs.filter((s) => !s.startsWith('.') && NODE_ONLY.test(s)).map((s) => `${file}: ${s}`));
    expect(offenders).toEqual([]);
  });

  it('uses no Node globals in its graph', () => {
    const offenders = [...graph.keys()].filter((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .some((line) => !/^\s*(\*|\/\/)/.test(line) && NODE_GLOBALS.test(line)),
    );
    expect(offenders).toEqual([]);
  });
});
