#!/usr/bin/env node
'use strict';
/**
 * Makes a fresh clone runnable: installs dependencies when node_modules is missing and compiles
 * when dist/ is older than the sources. Runs before `npm start`, `npm run demo` and `npm test`.
 * Plain Node with no dependencies, since it runs before they exist.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(args) {
  const result = spawnSync(npm, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`idempotency-sidecar: "npm ${args.join(' ')}" failed; fix the error above and run it again.`);
    process.exit(result.status ?? 1);
  }
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(full) : fs.statSync(full).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

if (!fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
  console.error('idempotency-sidecar: installing dependencies (npm ci)...');
  run(['ci', '--no-audit', '--no-fund']);
}

const stamp = path.join(root, 'dist', '.build-stamp');
const sourcesChanged = () =>
  Math.max(newestMtime(path.join(root, 'src')), fs.statSync(path.join(root, 'tsconfig.json')).mtimeMs, fs.statSync(path.join(root, 'tsconfig.build.json')).mtimeMs);
if (!fs.existsSync(stamp) || fs.statSync(stamp).mtimeMs < sourcesChanged()) {
  // The stamp carries the time the build STARTED, so a source saved while tsc runs is rebuilt next time.
  const started = new Date();
  run(['run', '--silent', 'build']);
  fs.writeFileSync(stamp, started.toISOString() + '\n');
  fs.utimesSync(stamp, started, started);
}
