import distribution from './distribution.ts';
import dockerhub from './dockerhub.ts';
import generic from './generic.ts';
import ghcr from './ghcr.ts';
import harbor from './harbor.ts';
import quay from './quay.ts';
import type { Receiver } from './types.ts';

export type { Receiver, ReceiverProvider } from './types.ts';
export { RECEIVER_PROVIDERS } from './types.ts';

/** Every registry webhook receiver, by the provider name in its URL. */
export const RECEIVERS: ReadonlyMap<string, Receiver<unknown>> = new Map(
  ([distribution, dockerhub, harbor, quay, ghcr, generic] as Receiver<unknown>[]).map((r) => [r.provider, r]),
);
