import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readScript } from '../../src/store/lua-scripts';

describe('readScript: `--- @include` expansion', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'lua-include-'));
    mkdirSync(path.join(dir, 'includes'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (file: string, text: string): void => writeFileSync(path.join(dir, file), text);

  test('replaces each include line by the file, relative to the including file, nested', () => {
    write('includes/time.lua', 'local function nowMs() return 1 end\n');
    write('includes/record.lua', '--- @include "time.lua"\nlocal function decode() return nowMs() end\n');
    write('claim-1.lua', '-- header\n--- @include "includes/record.lua"\nreturn decode()\n');
    expect(readScript(dir, 'claim-1.lua')).toBe(
      '-- header\nlocal function nowMs() return 1 end\n\nlocal function decode() return nowMs() end\n\nreturn decode()\n',
    );
  });

  test('a file asked for twice is included once', () => {
    write('includes/a.lua', 'A\n');
    write('includes/b.lua', '--- @include "a.lua"\nB\n');
    write('s-1.lua', '--- @include "includes/a.lua"\n--- @include "includes/b.lua"\n');
    const text = readScript(dir, 's-1.lua');
    expect(text.match(/^A$/gm)).toHaveLength(1);
    expect(text).toContain('B');
  });

  test('a missing include fails with both names, and a cycle fails', () => {
    write('s-1.lua', '--- @include "includes/gone.lua"\n');
    expect(() => readScript(dir, 's-1.lua')).toThrow(/gone\.lua.*included by s-1\.lua/);
    write('includes/x.lua', '--- @include "y.lua"\n');
    write('includes/y.lua', '--- @include "x.lua"\n');
    write('c-1.lua', '--- @include "includes/x.lua"\n');
    expect(() => readScript(dir, 'c-1.lua')).toThrow(/include cycle: c-1\.lua -> x\.lua -> y\.lua -> x\.lua/);
  });

  test("the store's own scripts expand fully: no include line is left for Redis to see", () => {
    const scripts = path.join(__dirname, '..', '..', 'src', 'store', 'scripts');
    const files = readdirSync(scripts).filter((file) => file.endsWith('.lua'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect(readScript(scripts, file)).not.toMatch(/@include/);
  });
});
