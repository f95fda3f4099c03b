// Preloaded with `node --import` (NODE_OPTIONS) by test/integration/lazy-load.test.ts:
// appends the URL of every module the process loads to $ORRERY_TRACE_MODULES, one a line.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const out = process.env.ORRERY_TRACE_MODULES;
if (out) {
  registerHooks({
    load(url, context, nextLoad) {
      appendFileSync(out, `${url}\n`);
      return nextLoad(url, context);
    },
  });
}
