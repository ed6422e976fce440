/**
 * The baseline of an A/B run: another build of the sidecar, started next to the one under test so
 * that both are measured in the same interleaved rounds (on this machine, absolute figures move by
 * 2x between runs; only a comparison inside one run says anything).
 *
 * --baseline=REV extracts that revision with `git archive` (read-only for the repository: no
 * worktree is registered) into .bench/baseline-<commit>/ and compiles it there with this
 * checkout's node_modules (a symlink) and TypeScript; the build is kept and reused, a commit never
 * changes. --baseline-dist=DIR takes a build as it is: a checkout with dist/ and bin/.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export type BaselineSource =
  | { readonly kind: 'rev'; readonly rev: string }
  | { readonly kind: 'dist'; readonly dir: string }
  /** The build under test itself, started without --sidecar-node-args: an A/B of node flags. */
  | { readonly kind: 'same' };

export interface BaselineBuild {
  /** A checkout-shaped directory with dist/, bin/ and package.json. */
  readonly dir: string;
  /** How the report names it, e.g. `HEAD~1 (501ffa2e19ab)`. */
  readonly label: string;
  /** The commit it was built from, when known. */
  readonly commit: string | null;
}

/** Marks a finished build, so a build cut short is redone rather than reused. */
const DONE = '.bench-baseline-built';

export function prepareBaseline(root: string, source: BaselineSource, log: (line: string) => void): BaselineBuild {
  switch (source.kind) {
    case 'same':
      return { dir: root, label: 'this build without --sidecar-node-args', commit: null };
    case 'dist': {
      const dir = path.resolve(root, source.dir);
      for (const needed of ['dist/cli.js', 'bin/idempotency-sidecar.js', 'package.json']) {
        if (!fs.existsSync(path.join(dir, needed))) throw new Error(`--baseline-dist=${source.dir}: ${path.join(dir, needed)} is missing (give a checkout whose dist/ is built)`);
      }
      return { dir, label: `the build in ${dir}`, commit: null };
    }
    case 'rev':
      return buildRevision(root, source.rev, log);
  }
}

function buildRevision(root: string, rev: string, log: (line: string) => void): BaselineBuild {
  const git = (args: readonly string[]): string =>
    execFileSync('git', args, { cwd: root, encoding: 'utf8', env: { ...process.env, GIT_OPTIONAL_LOCKS: '0' }, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let commit: string;
  try {
    commit = git(['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]);
  } catch {
    throw new Error(`--baseline=${rev}: not a commit of this repository`);
  }
  const short = commit.slice(0, 12);
  const label = `${rev} (${short})`;
  const dir = path.join(root, '.bench', `baseline-${short}`);
  if (fs.existsSync(path.join(dir, DONE))) {
    log(`baseline ${label}: reusing the build in ${path.relative(root, dir)}`);
    return { dir, label, commit };
  }
  log(`baseline ${label}: extracting and building it in ${path.relative(root, dir)}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const archive = spawnSync('sh', ['-c', 'git archive --format=tar "$0" | tar -x -C "$1"', commit, dir], { cwd: root, encoding: 'utf8' });
  if (archive.status !== 0) throw new Error(`--baseline=${rev}: git archive failed: ${archive.stderr.trim()}`);
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const started = new Date();
  const steps: readonly (readonly string[])[] = [
    [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', 'tsconfig.build.json'],
    [path.join('scripts', 'copy-assets.js')],
  ];
  for (const args of steps) {
    const step = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });
    if (step.status !== 0) throw new Error(`--baseline=${rev}: building it failed (${args.join(' ')} in ${dir}):\n${step.stdout}${step.stderr}`);
  }
  // As scripts/ensure-built.js does, so the report says when the baseline's dist/ was built.
  fs.writeFileSync(path.join(dir, 'dist', '.build-stamp'), `${started.toISOString()}\n`);
  fs.writeFileSync(path.join(dir, DONE), `${commit}\n`);
  return { dir, label, commit };
}
