import { describe, expect, it } from 'vitest';
import { parseThpMode, thpWarning } from '../../../src/agent/node-info.ts';

describe('transparent huge pages', () => {
  it.each([
    ['always [madvise] never\n', 'madvise'],
    ['[always] madvise never', 'always'],
    ['always madvise [never]', 'never'],
    ['', 'unknown'],
  ])('reads the selected mode of %j as %s', (text, mode) => {
    expect(parseThpMode(text)).toBe(mode);
  });

  it('warns only on a GPU node whose mode is not always', () => {
    expect(thpWarning('always', true)).toBeUndefined();
    expect(thpWarning('madvise', false)).toBeUndefined();
    expect(thpWarning('madvise', true)).toMatch(/"madvise" on this GPU node.*"always"/);
    expect(thpWarning('unknown', true)).toMatch(/"unknown"/);
  });
});
