/** The engine's Clock (engine/ports.ts) on the system's monotonic clock and Node's timers. */
import type { Clock } from './engine/ports';

export const systemClock: Clock = {
  // Monotonic: a wall-clock step (NTP, a VM resumed) must not stretch or cut a deadline.
  now: () => performance.now(),
  setTimer(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};
