import { afterAll, beforeAll } from 'vitest';
import type { RunnerTask } from 'vitest';
import { HarnessError } from '../kube/errors.ts';
import { startContainerd, type Containerd, type ContainerdOptions } from './containerd.ts';
import { buildTestImage, type TestImageArchive } from './image.ts';

export interface ContainerdFixture {
  containerd: Containerd;
  /** The test image, imported into the instance's namespace. */
  image: TestImageArchive;
}

/**
 * One containerd with the test image imported, for the calling test file (or describe block): started in
 * beforeAll, stopped in afterAll, its logs kept when a test failed. Returns a getter for tests and hooks.
 */
export function useContainerd(options: ContainerdOptions = {}): () => ContainerdFixture {
  let fixture: ContainerdFixture | undefined;
  let started: Containerd | undefined;
  beforeAll(async () => {
    started = await startContainerd(options);
    fixture = { containerd: started, image: await buildTestImage(started) };
  });
  // Vitest 4 parses a hook's first parameter as a fixture pattern, so it must be destructured to reach `suite`.
  // eslint-disable-next-line no-empty-pattern
  afterAll(async ({}, suite) => {
    const failed = anyFailed(suite);
    await started?.stop({ keepLogs: failed });
    if (failed && started) console.warn(`a test failed: containerd logs kept in ${started.logsDir}`);
  });
  return () => {
    if (!fixture) throw new HarnessError('containerd is not started yet: use the getter inside tests or hooks');
    return fixture;
  };
}

function anyFailed(task: Readonly<RunnerTask>): boolean {
  return task.result?.state === 'fail' || ('tasks' in task && task.tasks.some(anyFailed));
}
