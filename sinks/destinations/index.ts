import type { DestinationModule } from './types.ts';
import amplitude from './amplitude/index.ts';
import ga4 from './ga4/index.ts';
import mixpanel from './mixpanel/index.ts';
import slack from './slack/index.ts';
import warehouse from './warehouse/index.ts';
import webhook from './webhook/index.ts';

/** Every destination type Orrery can deliver to, by the `type` users write. */
export const DESTINATIONS: ReadonlyMap<string, DestinationModule<unknown>> = new Map(
  ([webhook, amplitude, mixpanel, ga4, slack, warehouse] as DestinationModule<unknown>[]).map((m) => [m.type, m]),
);
