import { createPgStore } from '../../core/store/pg.ts';
import { storeContract } from '../contracts/store.ts';
import { serviceEnv, uniqueName } from '../helpers/index.ts';

storeContract('postgres', async () => createPgStore({ url: serviceEnv('DATABASE_URL'), schema: uniqueName('t').toLowerCase() }));
