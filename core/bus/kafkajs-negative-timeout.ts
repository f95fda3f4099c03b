import { createRequire } from 'node:module';

/**
 * kafkajs 2.2.4 (its last release, 2023) calls `setTimeout(check, throttledUntil - Date.now())`
 * in RequestQueue#scheduleCheckPendingRequests even when nothing is throttled
 * (`throttledUntil` is -1), so the delay is about minus the epoch in ms. Node has always
 * run a negative delay after 1 ms; since Node 23 it also prints `TimeoutNegativeWarning`
 * at every start of a process that uses Kafka. This replaces the method with the same one,
 * but with the delay clamped at 1 ms (what Node did anyway): the warning's cause goes, and
 * no warning is hidden. Loaded by core/bus/kafka.ts before any client is made.
 */
type RequestQueue = {
  throttledUntil: number;
  pending: unknown[];
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
};

/** kafkajs's own value (src/network/requestQueue/index.js). */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;

const require = createRequire(import.meta.url);
// The same module instance as kafkajs's own `require('./requestQueue')`: one CJS cache entry.
const RequestQueueClass = require('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueue };

RequestQueueClass.prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: RequestQueue) {
  let scheduleAt = this.throttledUntil - Date.now();
  if (!this.throttleCheckTimeoutId) {
    if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL;
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    }, Math.max(1, scheduleAt));
  }
};
