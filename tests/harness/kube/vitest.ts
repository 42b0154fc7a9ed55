import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane.ts';
import { HarnessError } from './errors.ts';

/**
 * One control plane for the calling test file (or describe block): started in beforeAll, stopped in
 * afterAll, its files kept when a test failed. Returns a getter to call inside tests and hooks.
 */
export function useControlPlane(options: ControlPlaneOptions = {}): () => ControlPlane {
  let plane: ControlPlane | undefined;
  let failed = false;
  beforeAll(async () => {
    plane = await startControlPlane(options);
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });
  afterAll(async () => {
    await plane?.stop({ keepLogs: failed });
    if (failed && plane) console.warn(`a test failed: kube control plane logs kept in ${plane.logsDir}`);
  });
  return () => {
    if (!plane) throw new HarnessError('the control plane is not started yet: use the getter inside tests or hooks');
    return plane;
  };
}
