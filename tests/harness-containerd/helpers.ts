export { freeLoopbackPort, waitFor } from '../support/wait.ts';

/** The counter's output: one number a line (a line cut off mid-write is left out). */
export function numbersIn(text: string): number[] {
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop();
  return lines
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number);
}
