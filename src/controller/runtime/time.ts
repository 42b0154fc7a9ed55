/** metav1.MicroTime (Lease renewTime, Event eventTime) is RFC 3339 with six fractional digits. */
export function toMicroTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Epoch ms of a metav1.Time/MicroTime string, or undefined when absent or unparsable. */
export function parseKubeTime(text: string | Date | undefined | null): number | undefined {
  if (text === undefined || text === null) return undefined;
  const ms = text instanceof Date ? text.getTime() : Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}
