import { describe, expect, it } from 'vitest';
import { createRateMeter, timeLeftText } from './rate.js';

describe('the upload rate and the time left', () => {
  it('says nothing before a few seconds of measurements exist', () => {
    const meter = createRateMeter({ windowMs: 20_000, minSpanMs: 3_000 });
    expect(meter.rate()).toBeNull();
    meter.add(0, 0);
    meter.add(2_000, 2_000_000);
    expect(meter.rate()).toBeNull();
    expect(meter.secondsLeft(10_000_000)).toBeNull();
    meter.add(4_000, 4_000_000);
    expect(meter.rate()).toBe(1_000_000);
    expect(meter.secondsLeft(180_000_000)).toBe(180);
    expect(timeLeftText(meter.secondsLeft(180_000_000))).toBe('about 3 min left');
  });

  it('follows the recent rate, a moving average over its window', () => {
    const meter = createRateMeter({ windowMs: 10_000, minSpanMs: 3_000 });
    // 30 s at 1 MB/s, then the connection slows to 250 KB/s for 20 s
    for (let s = 0; s <= 30; s += 1) meter.add(s * 1000, s * 1_000_000);
    expect(meter.rate()).toBe(1_000_000);
    for (let s = 1; s <= 20; s += 1) meter.add((30 + s) * 1000, 30_000_000 + s * 250_000);
    expect(meter.rate()).toBe(250_000); // the fast start no longer counts
    expect(meter.secondsLeft(15_000_000)).toBe(60);
  });

  it('forgets a pause: the idle time says nothing of the speed', () => {
    const meter = createRateMeter({ windowMs: 20_000, minSpanMs: 3_000 });
    meter.add(0, 0);
    meter.add(5_000, 5_000_000);
    meter.reset();
    meter.add(65_000, 5_000_000);
    expect(meter.rate()).toBeNull();
    meter.add(69_000, 9_000_000);
    expect(meter.rate()).toBe(1_000_000);
  });

  it('has no rate while nothing moves (a retried request starting again)', () => {
    const meter = createRateMeter({ minSpanMs: 1_000 });
    meter.add(0, 5_000);
    meter.add(4_000, 1_000);
    expect(meter.rate()).toBeNull();
    expect(meter.secondsLeft(0)).toBe(0);
  });

  it('says the time left in coarse words', () => {
    expect(timeLeftText(null)).toBe('');
    expect(timeLeftText(4)).toBe('a few seconds left');
    expect(timeLeftText(42)).toBe('about 50 s left');
    expect(timeLeftText(170)).toBe('about 3 min left');
    expect(timeLeftText(3600)).toBe('about 1 h left');
    expect(timeLeftText(2 * 3600 + 15 * 60)).toBe('about 2 h 15 min left');
  });
});
