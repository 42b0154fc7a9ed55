import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Integration tiers start real servers (HTTP, kube-apiserver, containerd): generous per-test limits.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Suites that start daemons share machine-wide resources (cgroups, CRIU pids, ports); run files one by one
    // on this 2-core machine, tests inside a file still run in order.
    fileParallelism: false,
    pool: 'forks',
    reporters: ['default', './tests/support/summary-reporter.ts'],
  },
});
