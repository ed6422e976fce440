/**
 * Durations as operators write them: a whole number and a unit, `250ms`, `2s`, `5m`, `24h`, `7d`.
 * A unit is required: a bare `30` could mean seconds to one reader and milliseconds to another,
 * and guessing wrong on a TTL or a lock lease is the kind of mistake nobody sees until it hurts.
 */

const UNIT_MS = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
} as const;

type Unit = keyof typeof UNIT_MS;

const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** What every duration message tells the operator to write instead. */
export const DURATION_HINT = 'use a number with ms, s, m, h or d, e.g. 250ms, 2s, 24h';

/**
 * Milliseconds, or `undefined` when `text` is not `<digits><unit>`. Zero parses (`0s` is 0): whether
 * zero makes sense is the setting's rule, not the syntax's. No sign, no fraction, no spaces, no
 * upper case, and nothing that overflows a safe integer.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (match === null) return undefined;
  const amount = Number(match[1]);
  const ms = amount * UNIT_MS[match[2] as Unit];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

const UNITS_LARGEST_FIRST: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];

/**
 * An exact spelling of `ms` that `parseDuration` reads back, in the largest unit that divides it,
 * e.g. 1500 -> `1500ms`, 7200000 -> `2h`, 604800000 -> `7d`; except that up to two days it stays in
 * hours, because `24h` is how people (and the contract) write a day-long TTL. Used by `--help` and
 * `--config-test`, so what they print can be pasted back.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms <= 0) return `${ms}ms`;
  for (const unit of UNITS_LARGEST_FIRST) {
    const size = UNIT_MS[unit];
    if (ms % size !== 0) continue;
    if (unit === 'd' && ms <= 2 * UNIT_MS.d) continue;
    return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
