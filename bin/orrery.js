#!/usr/bin/env node
// The CLI's entry point. Node's compile cache goes on before any TypeScript loads: with it
// warm, node neither strips the sources' types again (its stripper alone is ~20 MiB of RSS
// in every process) nor compiles them again, so each start after the first is leaner and
// faster. The cache lives in $NODE_COMPILE_CACHE, or node-compile-cache under the OS's temp
// dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Figures: bench/README.md, "Memory".
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./orrery.ts');
