/**
 * Preloaded into an orrery child by the memory scenario (`node --import`, via NODE_OPTIONS):
 * samples `process.memoryUsage()` and V8's heap spaces every 200 ms and keeps, in the file
 * named by ORRERY_MEM_PROBE, the latest sample and the one taken at the highest RSS so far.
 * Also the process's CPU seconds so far, so that a lever's CPU cost shows. Where the resident memory is, at the peak:
 * V8's heap (and which space), buffers outside it (external, arrayBuffers), the rest (code,
 * Node's own, the allocator's free lists). Costs one timer; allocates next to nothing.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

const file = process.env.ORRERY_MEM_PROBE;
if (file) {
  const MiB = (n) => Math.round((n / 1048576) * 10) / 10;
  const sample = () => {
    const m = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, MiB(s.space_size)]));
    const cpu = process.cpuUsage();
    return { at: Date.now(), cpuS: (cpu.user + cpu.system) / 1e6, rssMiB: MiB(m.rss), heapTotalMiB: MiB(m.heapTotal), heapUsedMiB: MiB(m.heapUsed), externalMiB: MiB(m.external), arrayBuffersMiB: MiB(m.arrayBuffers), spaceSizeMiB: spaces };
  };
  let peak = sample();
  const timer = setInterval(() => {
    const now = sample();
    if (now.rssMiB > peak.rssMiB) peak = now;
    // Whole or not at all: a reader must never see half a file (it lost a run's CPU figure).
    writeFileSync(`${file}.tmp`, JSON.stringify({ now, peak }));
    renameSync(`${file}.tmp`, file);
  }, 200);
  timer.unref();
}
