/**
 * Reads the store's Lua scripts and expands their includes, as bullmq does: a line
 *
 *   --- @include "includes/record.lua"
 *
 * is replaced by that file (a path relative to the including file), so that a fragment several
 * scripts share (the record's encoding, the settle notice) is written once. Each file is
 * included at most once per script, wherever it is asked for again, and an include that cannot
 * be read fails the load with the file's name: a script is never sent half expanded.
 *
 * Redis caches a script by the SHA-1 of its text, so the expanded text is the script's identity
 * (the benchmark's trace names scripts by that digest, and reads them through this module).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const INCLUDE = /^---\s*@include\s+"([^"]+)"\s*$/gm;

/** The text of `file` (under `dir`) with every include expanded. */
export function readScript(dir: string, file: string): string {
  return expand(path.resolve(dir, file), new Set<string>(), []);
}

function expand(file: string, included: Set<string>, chain: readonly string[]): string {
  included.add(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const from = chain.at(-1);
    throw new Error(`Lua script ${file}${from === undefined ? '' : ` (included by ${path.basename(from)})`} cannot be read`, { cause: error });
  }
  return text.replace(INCLUDE, (_line, target: string) => {
    const resolved = path.resolve(path.dirname(file), target);
    if (resolved === file || chain.includes(resolved)) {
      throw new Error(`Lua include cycle: ${[...chain, file, resolved].map((name) => path.basename(name)).join(' -> ')}`);
    }
    if (included.has(resolved)) return `-- (${target}: included above)`;
    return expand(resolved, included, [...chain, file]);
  });
}
