#!/usr/bin/env node
/**
 * Copies what tsc does not: the Lua scripts the Redis store reads at run time from the folder
 * next to its compiled module (src/store/scripts/*.lua -> dist/store/scripts/, and their
 * includes/). Plain Node, no
 * dependencies, so it runs right after `tsc` in `npm run build`.
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const ASSETS = [
  { from: 'src/store/scripts', to: 'dist/store/scripts', suffix: '.lua' },
  // The fragments the scripts share through `--- @include` (src/store/lua-scripts.ts).
  { from: 'src/store/scripts/includes', to: 'dist/store/scripts/includes', suffix: '.lua' },
];

let copied = 0;
for (const { from, to, suffix } of ASSETS) {
  const source = path.join(root, from);
  const target = path.join(root, to);
  const files = fs.readdirSync(source).filter((name) => name.endsWith(suffix));
  if (files.length === 0) {
    console.error(`copy-assets: no ${suffix} files in ${from}`);
    process.exit(1);
  }
  fs.mkdirSync(target, { recursive: true });
  // Drop scripts that no longer exist in the source, so dist never runs a removed one.
  for (const name of fs.readdirSync(target)) {
    if (name.endsWith(suffix) && !files.includes(name)) fs.rmSync(path.join(target, name));
  }
  for (const name of files) {
    fs.copyFileSync(path.join(source, name), path.join(target, name));
    copied += 1;
  }
}
console.log(`copy-assets: ${copied} file(s) copied`);
