// Durations for log fields. From process.hrtime: the `performance` global
// loads perf_hooks and nine internal modules at its first use, 0.7 ms of a
// hook's or the shim's start.

/** Starts timing; the function returned gives the milliseconds since, to the microsecond. */
export function stopwatch(): () => number {
  const started = process.hrtime.bigint();
  return () => Number((process.hrtime.bigint() - started) / 1000n) / 1000;
}
