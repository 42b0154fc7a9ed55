/**
 * containerConcurrency and load balancing, pure: pick the ready pod with the fewest requests in
 * flight that is still below the per-pod limit. Ties go round-robin from `start`, so equal pods share
 * the load instead of the first one taking every request.
 *
 * @param pods requests in flight per pod, in a stable order
 * @param limit per-pod limit; 0 means unlimited
 * @returns the index of the pod to use, or -1 when every pod is at its limit (or there is none)
 */
export function pickEndpoint(pods: readonly { readonly inFlight: number }[], limit: number, start: number): number {
  const count = pods.length;
  let best = -1;
  let bestLoad = Infinity;
  for (let step = 0; step < count; step++) {
    const index = (start + step) % count;
    const load = pods[index]!.inFlight;
    if (limit > 0 && load >= limit) continue;
    if (load < bestLoad) {
      best = index;
      bestLoad = load;
      if (load === 0) break;
    }
  }
  return best;
}
