/**
 * The processes of the benchmark other than Redis (test/helpers/redis-server.ts runs those): the
 * upstream, the two plain pass-through proxies and the load generator are forked with an IPC
 * channel (each exits when the channel closes, i.e. when the harness goes away by any means);
 * the sidecar runs through the package's bin like a user runs it, with a `sh` watchdog that
 * kills it if the harness dies, as the test helpers do. Also: peak and current RSS from /proc.
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { killWithParent } from '../test/helpers/process-watchdog';

const HOST = '127.0.0.1';

export interface BenchProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last few KiB the process wrote to stderr (for error messages). */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function track(name: string, child: ChildProcess): BenchProcess {
  if (child.pid === undefined) throw new Error(`${name}: the process did not start`);
  live.add(child);
  child.once('exit', () => live.delete(child));
  let tail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-8192);
  });
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const exit = exited() ? Promise.resolve() : once(child, 'exit').then(() => undefined);
  return {
    name,
    pid: child.pid,
    child,
    stderrTail: () => tail,
    stop: async (graceMs = 10_000) => {
      if (!exited()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exit;
        clearTimeout(timer);
      }
      live.delete(child);
    },
  };
}

/** Forks a compiled script that reports `{type: 'ready', port}` over IPC once it listens. */
export async function forkServer(
  name: string,
  script: string,
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 15_000,
  execArgv: readonly string[] = [],
): Promise<BenchProcess & { readonly url: string }> {
  const child = fork(script, [], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    execArgv: [...execArgv],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const handle = track(name, child);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not report ready within ${timeoutMs} ms:\n${handle.stderrTail()}`)), timeoutMs);
    child.on('message', (message: { type?: string; port?: number }) => {
      if (message.type === 'ready' && typeof message.port === 'number') {
        clearTimeout(timer);
        resolve(message.port);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${handle.stderrTail()}`));
    });
  });
  return { ...handle, url: `http://${HOST}:${port}` };
}

/** Forks a script that talks over IPC but listens on nothing (the load generator). */
export async function forkWorker(name: string, script: string, timeoutMs = 15_000): Promise<BenchProcess> {
  const child = fork(script, [], { env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const handle = track(name, child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not report ready within ${timeoutMs} ms:\n${handle.stderrTail()}`)), timeoutMs);
    child.on('message', (message: { type?: string }) => {
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready:\n${handle.stderrTail()}`));
    });
  });
  return handle;
}

export interface SidecarStart {
  readonly name: string;
  /** bin/idempotency-sidecar.js of the package. */
  readonly bin: string;
  readonly upstream: string;
  readonly port: number;
  readonly adminPort: number;
  /** IDEMPOTENCY_* beyond the upstream, the ports and the host. */
  readonly env: Readonly<Record<string, string>>;
  /** Flags for node itself, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
}

/**
 * The sidecar as its own process through the bin. Its log lines (JSON on stdout, one per guarded
 * request at the default level `info`) go to /dev/null: formatted and written as in production,
 * read by nobody; stderr is kept for error messages.
 */
export async function startSidecarProcess(options: SidecarStart, timeoutMs = 15_000): Promise<BenchProcess & { readonly url: string; readonly adminUrl: string }> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.bin], {
    env: {
      PATH: process.env['PATH'] ?? '',
      IDEMPOTENCY_UPSTREAM: options.upstream,
      IDEMPOTENCY_PORT: String(options.port),
      IDEMPOTENCY_ADMIN_PORT: String(options.adminPort),
      IDEMPOTENCY_HOST: HOST,
      ...options.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  killWithParent(child, 'bench');
  const handle = track(options.name, child);
  const adminUrl = `http://${HOST}:${options.adminPort}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${options.name} exited with ${child.exitCode} before it was ready:\n${handle.stderrTail()}`);
    try {
      const response = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await handle.stop(0);
      throw new Error(`${options.name} was not ready within ${timeoutMs} ms:\n${handle.stderrTail()}`);
    }
    await sleep(50);
  }
  return { ...handle, url: `http://${HOST}:${options.port}`, adminUrl };
}


/** Shared with the tests. */
export { freePort } from '../test/helpers/free-port';

export interface MemoryStatus {
  /** Resident set size now, bytes. */
  readonly rss: number;
  /** Peak resident set size (VmHWM) since start or the last resetPeak(), bytes. */
  readonly peak: number;
}

export function memoryOf(pid: number): MemoryStatus | undefined {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux 4.0+: `5` to clear_refs). False where not allowed. */
export function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

let clockTicks: number | undefined;

/** User + system CPU time of a process so far, in seconds (/proc/<pid>/stat), or undefined. */
export function cpuSecondsOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // After "pid (comm) ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return Number.isFinite(ticks) ? ticks / clockTicks : undefined;
}

/**
 * CPU seconds the whole machine has spent busy (all CPUs: user, nice, system, irq, softirq and
 * steal from the `cpu` line of /proc/stat), or undefined.
 */
export function machineBusySeconds(): number | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    const ticks = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
    cpuSecondsOf(process.pid);
    return Number.isFinite(ticks) ? ticks / (clockTicks ?? 100) : undefined;
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The package's root: the nearest directory above this file whose package.json is ours. */
export function findRepoRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (manifest.name === 'idempotency-sidecar') return dir;
    } catch {
      // no package.json here
    }
    if (path.dirname(dir) === dir) throw new Error(`no idempotency-sidecar package.json above ${from}`);
  }
}
