/**
 * Imports @platformatic/kafka without compiling its option validators up front.
 *
 * The library compiles 38 ajv schemas (one per client option set) while its modules load,
 * with `allErrors` code generation, and then calls them only for clients created with
 * `strict: true` (this adapter creates none). Measured (`node -e` importing the package,
 * Node 24, 3 runs): 93–99 MiB RSS eager, 85–88 MiB with compilation deferred; heap used
 * 21–23 → 14 MiB. So while the package loads, Ajv2020's `compile` hands out validators that
 * compile their schema on their first call, then behave as the compiled function does
 * (`errors` included, which the library reads after a failed call). It is put back as soon
 * as the import settles: later compiles (the schema registry's) are ajv's own.
 *
 * The Ajv2020 patched is the one the package itself resolves (resolved from its own
 * directory), so a second copy of ajv elsewhere in node_modules cannot be patched instead.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

type Validate = ((data: unknown) => boolean) & { errors?: unknown; schema?: unknown };
interface AjvLike {
  prototype: { compile(this: unknown, schema: unknown, meta?: boolean): Validate };
}

let loading: Promise<typeof import('@platformatic/kafka')> | undefined;

export function importPlatformaticKafka(): Promise<typeof import('@platformatic/kafka')> {
  loading ??= load();
  return loading;
}

async function load(): Promise<typeof import('@platformatic/kafka')> {
  const packageUrl = import.meta.resolve('@platformatic/kafka');
  const ajvPath = createRequire(packageUrl).resolve('ajv/dist/2020.js');
  const { Ajv2020 } = (await import(pathToFileURL(ajvPath).href)) as { Ajv2020: AjvLike };
  const compile = Ajv2020.prototype.compile;
  Ajv2020.prototype.compile = function deferredCompile(this: unknown, schema: unknown, meta?: boolean): Validate {
    const ajv = this;
    let compiled: Validate | undefined;
    const validate: Validate = (data) => {
      compiled ??= compile.call(ajv, schema, meta);
      const ok = compiled(data);
      validate.errors = compiled.errors;
      return ok;
    };
    validate.errors = null;
    validate.schema = schema;
    return validate;
  };
  try {
    return await import('@platformatic/kafka');
  } finally {
    Ajv2020.prototype.compile = compile;
  }
}
