import { hashWriteKey } from '../core/contracts/write-keys.ts';
import type { SourceConfig } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import type { TokenBucket } from '../core/cache/types.ts';

/** What ingest needs to know about a source once its write key matched. */
export interface Source {
  id: string;
  enabled: boolean;
  /** `*` for any origin. */
  allowedOrigins: readonly string[];
  rateLimit: TokenBucket | undefined;
}

/**
 * Maps a write key to its source. Implementations hold only hashes of keys. The config
 * one is here; the Postgres-backed one (control plane, live updates) plugs in the same way.
 */
export interface SourceResolver {
  byWriteKey(writeKey: string): Promise<Source | undefined>;
}

export { hashWriteKey };

async function buildIndex(sources: readonly SourceConfig[]): Promise<Map<string, Source>> {
  const byHash = new Map<string, Source>();
  for (const s of sources) {
    const source: Source = {
      id: s.id,
      enabled: s.enabled,
      allowedOrigins: s.allowedOrigins,
      rateLimit: s.rateLimit ? { capacity: s.rateLimit.burst, refillPerSec: s.rateLimit.eventsPerSecond } : undefined,
    };
    const hashes = [...s.writeKeyHashes, ...(await Promise.all(s.writeKeys.map(hashWriteKey)))];
    for (const hash of hashes) {
      const other = byHash.get(hash);
      if (other && other.id !== s.id) throw new ConfigError(`sources ${other.id} and ${s.id} share a write key`);
      byHash.set(hash, source);
    }
  }
  return byHash;
}

function resolverOver(index: () => Map<string, Source>): SourceResolver {
  // The hash of a key is computed once per key seen, not once per request.
  const memo = new Map<string, string>();
  return {
    async byWriteKey(writeKey) {
      let hash = memo.get(writeKey);
      if (hash === undefined) {
        hash = await hashWriteKey(writeKey);
        if (memo.size > 10_000) memo.clear();
        memo.set(writeKey, hash);
      }
      return index().get(hash);
    },
  };
}

/**
 * Sources from a fixed list (the config file). Plain keys are hashed here and not kept.
 *
 * @example const sources = await createConfigSourceResolver(config.sources);
 */
export async function createConfigSourceResolver(sources: readonly SourceConfig[]): Promise<SourceResolver> {
  const index = await buildIndex(sources);
  return resolverOver(() => index);
}

/**
 * Sources from the live control plane: a new key, a disabled source or a changed origin
 * list takes effect without a restart. A change that cannot be indexed (two sources share
 * a key) is logged and the previous index stays.
 *
 * @example const sources = await createLiveSourceResolver(controlPlane, (err) => log.error({ err }));
 */
export async function createLiveSourceResolver(
  controlPlane: { current(): { sources: readonly SourceConfig[] }; subscribe(cb: (s: { sources: readonly SourceConfig[] }) => void): () => void },
  onError: (err: unknown) => void,
): Promise<SourceResolver & { close(): void }> {
  let index = await buildIndex(controlPlane.current().sources);
  const unsubscribe = controlPlane.subscribe((snapshot) => {
    buildIndex(snapshot.sources).then((next) => (index = next), onError);
  });
  return { ...resolverOver(() => index), close: unsubscribe };
}
