import { InvalidInputError } from './errors.ts';

/** Go/Kubernetes-style duration strings ("300ms", "1.5s", "5m", "1h30m") as used in the CRDs. */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number {
  if (!new RegExp(DURATION_PATTERN).test(text)) {
    throw new InvalidInputError(`invalid duration "${text}": expected e.g. "500ms", "30s", "5m" or "1h30m"`, { text });
  }
  let total = 0;
  for (const match of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)) {
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
  }
  return total;
}
