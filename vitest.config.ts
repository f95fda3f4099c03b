import { defineConfig } from 'vitest/config';

// Two projects: unit tests sit beside the code and need nothing running; integration
// tests under test/ talk to the real services that test/services/up starts. Integration
// files run one at a time because some of them stop and restart Kafka.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{core,ingest,router,sinks,gitops,pilot,manifests,bench,bin}/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
    ],
  },
});
