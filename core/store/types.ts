/**
 * The store: SQL. Adapters: pg (production) and PGlite (the embedded default today) speak
 * Postgres, with the same SQL and migrations, and one contract suite
 * (test/contracts/store.ts) runs against both; SQLite (./sqlite.ts, issue #19) speaks its
 * own dialect, where a domain's statements differ (./sqlite-plan.md).
 */

export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<Row>>;
}

export interface Store extends Queryable {
  readonly kind: string;
  /** The SQL a store speaks: Postgres (pg, PGlite; the default when absent) or SQLite (./sqlite.ts). */
  readonly dialect?: 'postgres' | 'sqlite';
  /**
   * Runs `fn` in a transaction on one connection: committed when it resolves, rolled back
   * when it throws (and the error rethrown).
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel: `onNotify` gets each NOTIFY payload. The listener reconnects by
   * itself after a dropped connection, calling `onReconnect` so the caller can re-read
   * what it may have missed. Resolves to a function that stops listening.
   */
  listen(channel: string, onNotify: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** The dialect of `store`'s SQL, for the few statements that differ (./sqlite-plan.md). */
export function dialectOf(store: Pick<Store, 'dialect'>): 'postgres' | 'sqlite' {
  return store.dialect ?? 'postgres';
}
