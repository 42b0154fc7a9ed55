import { describe, expect, it } from 'vitest';
import { HoldQueue } from '../../src/activator/hold-queue.ts';

describe('hold queue', () => {
  it('is FIFO and bounded', () => {
    const queue = new HoldQueue<string>(2);
    expect(queue.push('a', 0, 100)).toBeDefined();
    expect(queue.push('b', 0, 100)).toBeDefined();
    expect(queue.push('c', 0, 100)).toBeUndefined();
    expect(queue.shift()?.item).toBe('a');
    expect(queue.push('c', 0, 100)).toBeDefined();
    expect([queue.shift()?.item, queue.shift()?.item, queue.shift()]).toEqual(['b', 'c', undefined]);
  });

  it('removes an entry from the middle and keeps the order of the rest', () => {
    const queue = new HoldQueue<string>(10);
    const tickets = ['a', 'b', 'c'].map((item) => queue.push(item, 0, 100)!.ticket);
    expect(queue.remove(tickets[1]!)).toBe(true);
    expect(queue.remove(tickets[1]!)).toBe(false);
    expect(queue.takeAll().map((entry) => entry.item)).toEqual(['a', 'c']);
    expect(queue.size).toBe(0);
  });

  it('takes expired entries by deadline, in arrival order', () => {
    const queue = new HoldQueue<string>(10);
    queue.push('a', 0, 100);
    queue.push('b', 10, 100);
    queue.push('c', 50, 100);
    expect(queue.nextDeadline()).toBe(100);
    expect(queue.takeExpired(99).map((entry) => entry.item)).toEqual([]);
    expect(queue.takeExpired(110).map((entry) => entry.item)).toEqual(['a', 'b']);
    expect(queue.nextDeadline()).toBe(150);
    expect(queue.size).toBe(1);
  });

  it('still finds every expired entry when the timeout changed between pushes', () => {
    const queue = new HoldQueue<string>(10);
    queue.push('long', 0, 1_000);
    queue.push('short', 10, 50);
    queue.push('mid', 20, 200);
    expect(queue.nextDeadline()).toBe(60);
    expect(queue.takeExpired(300).map((entry) => entry.item)).toEqual(['short', 'mid']);
    expect(queue.nextDeadline()).toBe(1_000);
  });

  it('applies a lowered capacity to new entries only', () => {
    const queue = new HoldQueue<number>(3);
    [1, 2, 3].forEach((n) => queue.push(n, 0, 10));
    queue.setCapacity(1);
    expect(queue.push(4, 0, 10)).toBeUndefined();
    expect(queue.size).toBe(3);
  });
});
