/**
 * Simulated time for the engine's Clock port (src/engine/ports.ts): nothing happens until a test
 * moves the clock, and then the timers that fall due fire in order, each one's consequences
 * (promise chains on in-process stores) settled before the next. A unit test on it takes no
 * real time and cannot lose a race to a busy machine.
 */
import type { CancelTimer, Clock } from '../../src/engine/ports';

interface Timer {
  readonly at: number;
  /** Set order: timers due at the same instant fire in the order they were set. */
  readonly seq: number;
  readonly fn: () => void;
}

/** 2026-01-01T00:00:00Z: the in-process stores read it as epoch milliseconds. */
const START = Date.UTC(2026, 0, 1);
/** Rounds of the event loop that let promise chains started by a timer run to their next wait. */
const SETTLE_ROUNDS = 20;

export class FakeClock implements Clock {
  private time = START;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  now(): number {
    return this.time;
  }

  setTimer(ms: number, fn: () => void): CancelTimer {
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return () => void this.timers.delete(timer);
  }

  /** A promise that resolves `ms` from now on this clock. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(ms, resolve));
  }

  /** Timers still pending. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    await settle();
    for (let next = this.next(); next !== undefined && next.at <= target; next = this.next()) {
      await this.fire(next);
    }
    this.time = target;
    await settle();
  }

  /**
   * Runs the clock until `work` settles: whenever nothing else can happen, time jumps to the next
   * timer. Throws if `work` is still pending with no timer left (it waits on something this clock
   * does not drive) or after `limitMs` of simulated time.
   */
  async until<T>(work: Promise<T>, limitMs = 600_000): Promise<T> {
    let done = false;
    const watched = work.finally(() => {
      done = true;
    });
    const limit = this.time + limitMs;
    await settle();
    while (!done) {
      const next = this.next();
      if (next === undefined) throw new Error(`FakeClock.until: the work is pending and no timer is left to fire (at +${this.time - START} ms)`);
      if (next.at > limit) throw new Error(`FakeClock.until: the work is still pending after ${limitMs} ms of simulated time`);
      await this.fire(next);
    }
    return watched;
  }

  private next(): Timer | undefined {
    let earliest: Timer | undefined;
    for (const timer of this.timers) {
      if (earliest === undefined || timer.at < earliest.at || (timer.at === earliest.at && timer.seq < earliest.seq)) earliest = timer;
    }
    return earliest;
  }

  private async fire(timer: Timer): Promise<void> {
    this.timers.delete(timer);
    this.time = Math.max(this.time, timer.at);
    timer.fn();
    await settle();
  }
}

/** Lets pending promise callbacks run: each round is one turn of the real event loop. */
async function settle(): Promise<void> {
  for (let round = 0; round < SETTLE_ROUNDS; round += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}
