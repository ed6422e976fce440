import { formatDuration, parseDuration } from '../../src/config/duration';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['1ms', 1],
    ['2s', 2_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['0s', 0],
    ['007s', 7_000],
  ])('reads %s as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ['24', 'no unit'],
    ['', 'empty'],
    ['s', 'no number'],
    ['-1s', 'negative'],
    ['+1s', 'a sign'],
    ['1.5s', 'a fraction'],
    ['1 s', 'a space'],
    [' 1s', 'a leading space'],
    ['1S', 'an upper-case unit'],
    ['1sec', 'a long unit'],
    ['1h30m', 'two units'],
    ['1w', 'weeks'],
    ['1e3ms', 'an exponent'],
    ['99999999999999999d', 'more than a safe integer of milliseconds'],
  ])('refuses %j (%s)', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('formatDuration', () => {
  it.each([
    [250, '250ms'],
    [1_500, '1500ms'],
    [2_000, '2s'],
    [90_000, '90s'],
    [300_000, '5m'],
    [86_400_000, '24h'],
    [172_800_000, '48h'],
    [259_200_000, '3d'],
    [604_800_000, '7d'],
  ])('writes %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it.each([1, 999, 1_000, 61_000, 3_600_000, 86_400_000, 90_000_000, 1_209_600_000])(
    'writes %d ms so that parseDuration reads it back',
    (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    },
  );
});
