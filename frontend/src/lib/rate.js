// The upload's speed and the time left: a moving average of the bytes sent over the last
// WINDOW_MS, said only once MIN_SPAN_MS of measurements exist (the first seconds of an upload
// are its slowest and least telling).

export const WINDOW_MS = 20_000;
export const MIN_SPAN_MS = 3_000;

/**
 * A rate meter: `add(ms, bytes)` records how many bytes were sent in all at time `ms`;
 * `rate()` is bytes a second over the window (null before MIN_SPAN_MS of data);
 * `secondsLeft(remaining)` the time the remaining bytes take at that rate (null likewise);
 * `reset()` forgets the samples (after a pause, whose idle time says nothing of the speed).
 */
export function createRateMeter({ windowMs = WINDOW_MS, minSpanMs = MIN_SPAN_MS } = {}) {
  let samples = [];
  const meter = {
    add(ms, bytes) {
      samples.push({ ms, bytes });
      // keep one sample at or before the window's start, so the window is always full
      while (samples.length > 2 && samples[1].ms <= ms - windowMs) samples.shift();
    },
    rate() {
      if (samples.length < 2) return null;
      const first = samples[0];
      const last = samples[samples.length - 1];
      const span = last.ms - first.ms;
      if (span < minSpanMs) return null;
      const rate = ((last.bytes - first.bytes) * 1000) / span;
      return rate > 0 ? rate : null;
    },
    secondsLeft(remaining) {
      if (remaining <= 0) return 0;
      const rate = meter.rate();
      return rate ? remaining / rate : null;
    },
    reset() {
      samples = [];
    },
  };
  return meter;
}

/** "about 3 min left", in the coarse steps a person reads at a glance; '' when unknown. */
export function timeLeftText(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '';
  if (seconds < 10) return 'a few seconds left';
  if (seconds < 60) return `about ${Math.ceil(seconds / 10) * 10} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return `about ${hours} h${rest ? ` ${rest} min` : ''} left`;
}
