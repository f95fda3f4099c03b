#!/usr/bin/env node
// The CLI's entry point. Node's compile cache goes on before any TypeScript loads: with it
// warm, node neither strips the sources' types again (its stripper alone is ~20 MiB of RSS
// in every process) nor compiles them again, so each start after the first is leaner and
// faster. The cache lives in $NODE_COMPILE_CACHE, else the user's own cache dir
// ($XDG_CACHE_HOME or ~/.cache, then orrery/node-compile-cache), not a shared temp dir that
// another user could fill first. NODE_DISABLE_COMPILE_CACHE=1 turns it off; an unwritable
// dir only leaves it off. Figures: bench/README.md, "Memory".
import { enableCompileCache } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where the cache goes; undefined: node's own choice (no home directory to put it in). */
function cacheDir() {
  if (process.env.NODE_COMPILE_CACHE) return process.env.NODE_COMPILE_CACHE;
  try {
    return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'orrery', 'node-compile-cache');
  } catch {
    return undefined;
  }
}

enableCompileCache(cacheDir());
await import('./orrery.ts');
