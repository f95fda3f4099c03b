/**
 * Kubernetes resource quantities (`512Mi`, `10Gi`, `500m`, `1.5G`), as far as the
 * manifests need them: validating values and turning a volume size into bytes (the log
 * rotation cap defaults to a share of the log volume).
 */

/** A quantity as Kubernetes accepts it for cpu, memory and storage (no exponent form). */
export const QUANTITY = /^(?:\d+(?:\.\d+)?|\.\d+)(?:m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

const FACTORS: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/**
 * The value of a quantity (bytes for memory and storage, cores for cpu).
 *
 * @example parseQuantity('10Gi') === 10 * 2 ** 30
 */
export function parseQuantity(q: string): number {
  if (!QUANTITY.test(q)) throw new RangeError(`not a Kubernetes quantity: ${JSON.stringify(q)}`);
  const m = /^([\d.]+)([a-zA-Z]*)$/.exec(q)!;
  return Number(m[1]) * FACTORS[m[2]!]!;
}
