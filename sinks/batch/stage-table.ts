/**
 * The staging table's default name, apart from ./stage.ts so that the warehouse
 * destination's config can name it without loading pg and pg-copy-streams.
 */
export const DEFAULT_STAGE_TABLE = 'batch_events';
