/**
 * The routed envelope's bytes without a second serialisation: the message as read, its
 * closing brace replaced by `,"routing":{…}}` (`routingJson` is `JSON.stringify` of the
 * routing, the same for every event of a destination in a batch). Same object as
 * `encodeEnvelope({ ...env, routing })` with `routing` last, as that spread puts it, for
 * an envelope read whole from `raw` that had no routing of its own (the caller checks).
 * Undefined when `raw` does not end in an object's closing brace after at least one
 * field: then the caller encodes.
 */
export function spliceRouting(raw: Uint8Array, routingJson: string): Buffer | undefined {
  let end = raw.length - 1;
  while (end > 0 && isJsonSpace(raw[end]!)) end--;
  if (raw[end] !== 0x7d /* } */) return undefined;
  let before = end - 1;
  while (before > 0 && isJsonSpace(raw[before]!)) before--;
  if (before <= 0 || raw[before] === 0x7b /* { */) return undefined;
  return Buffer.concat([raw.subarray(0, end), Buffer.from(`,"routing":${routingJson}}`)]);
}

function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}
