/**
 * The per-workload queue of held requests, pure: bounded, FIFO, removable from the middle (a client
 * that hung up), and every entry carries its own deadline. A Map keeps insertion order and deletes in
 * O(1), which is exactly a FIFO with removal.
 */
export interface HeldEntry<T> {
  readonly ticket: number;
  readonly item: T;
  readonly enqueuedAt: number;
  readonly deadline: number;
}

export class HoldQueue<T> {
  private readonly entries = new Map<number, HeldEntry<T>>();
  private nextTicket = 1;
  /** While deadlines arrive in order (one timeout per workload), scans stop at the first live entry. */
  private deadlinesOrdered = true;
  private lastDeadline = -Infinity;

  constructor(private capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  setCapacity(capacity: number): void {
    this.capacity = capacity;
  }

  /** Returns the entry, or undefined when the queue is full (the caller answers 503). */
  push(item: T, now: number, timeoutMs: number): HeldEntry<T> | undefined {
    if (this.entries.size >= this.capacity) return undefined;
    const entry: HeldEntry<T> = { ticket: this.nextTicket++, item, enqueuedAt: now, deadline: now + timeoutMs };
    if (entry.deadline < this.lastDeadline) this.deadlinesOrdered = false;
    this.lastDeadline = entry.deadline;
    this.entries.set(entry.ticket, entry);
    return entry;
  }

  remove(ticket: number): boolean {
    const removed = this.entries.delete(ticket);
    this.resetOrderWhenEmpty();
    return removed;
  }

  private resetOrderWhenEmpty(): void {
    if (this.entries.size > 0) return;
    this.deadlinesOrdered = true;
    this.lastDeadline = -Infinity;
  }

  shift(): HeldEntry<T> | undefined {
    for (const entry of this.entries.values()) {
      this.entries.delete(entry.ticket);
      this.resetOrderWhenEmpty();
      return entry;
    }
    return undefined;
  }

  /** Removes and returns every entry whose deadline has passed, in arrival order. */
  takeExpired(now: number): HeldEntry<T>[] {
    const expired: HeldEntry<T>[] = [];
    for (const entry of this.entries.values()) {
      if (entry.deadline <= now) expired.push(entry);
      else if (this.deadlinesOrdered) break;
    }
    for (const entry of expired) this.entries.delete(entry.ticket);
    this.resetOrderWhenEmpty();
    return expired;
  }

  /** The earliest deadline, to arm a single timer per queue. */
  nextDeadline(): number | undefined {
    let earliest: number | undefined;
    for (const entry of this.entries.values()) {
      if (this.deadlinesOrdered) return entry.deadline;
      if (earliest === undefined || entry.deadline < earliest) earliest = entry.deadline;
    }
    return earliest;
  }

  takeAll(): HeldEntry<T>[] {
    const all = [...this.entries.values()];
    this.entries.clear();
    this.resetOrderWhenEmpty();
    return all;
  }
}
