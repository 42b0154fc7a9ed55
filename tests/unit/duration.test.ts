import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/lib/duration.ts';
import { InvalidInputError } from '../../src/lib/errors.ts';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
  ])('%s -> %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '5', '-1s', '5 m', '1d', 'm5'])('rejects %j with a message naming the input', (text) => {
    expect(() => parseDuration(text)).toThrow(InvalidInputError);
    expect(() => parseDuration(text)).toThrow(`invalid duration "${text}"`);
  });
});
