import type { DestinationModule } from './types.ts';
import webhook from './webhook/index.ts';

/** Every destination type Orrery can deliver to, by the `type` users write. */
export const DESTINATIONS: ReadonlyMap<string, DestinationModule<unknown>> = new Map(
  ([webhook] as DestinationModule<unknown>[]).map((m) => [m.type, m]),
);
