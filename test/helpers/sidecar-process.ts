/**
 * Runs the sidecar as its own OS process, through the package's bin, exactly as a user would:
 * configuration by environment (and optionally a YAML file). Both listeners bind port 0 unless a
 * test fixes them; the process is ready, and its ports known, once it logs its "listening" line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jsonLines, urlField, waitForListening } from './listening-line';
import { killWithParent } from './process-watchdog';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'idempotency-sidecar.js');

export interface SidecarProcess {
  /** `https://` when the environment gives the listener a certificate (IDEMPOTENCY_TLS_CERT_FILE). */
  readonly url: string;
  readonly adminUrl: string;
  /** The ports it bound: give them to a restart that must come back where its clients expect it. */
  readonly port: number;
  readonly adminPort: number;
  readonly process: ChildProcess;
  /** Everything the process wrote, stdout and stderr, so far. */
  output(): string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SidecarOptions {
  readonly upstream: string;
  /** IDEMPOTENCY_* variables beyond the upstream and the ports. */
  readonly env?: Readonly<Record<string, string>>;
  /** Written to a temporary file and passed with --config. */
  readonly configYaml?: string;
  readonly args?: readonly string[];
  /**
   * Fixed ports, e.g. to start a replica again where its clients expect it after a crash (the
   * ports a first start bound); unset: 0, ports the system picks.
   */
  readonly port?: number;
  readonly adminPort?: number;
  /**
   * Append the process's stdout and stderr to this file (the child writes it directly, so a busy
   * replica costs this process nothing) instead of keeping them in memory; output() and logs()
   * then read the file.
   */
  readonly logFile?: string;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});


export async function startSidecar(options: SidecarOptions): Promise<SidecarProcess> {
  const args = [BIN, ...(options.args ?? [])];
  if (options.configYaml !== undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sidecar-config-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, options.configYaml);
    args.push('--config', file);
  }
  const logFd = options.logFile === undefined ? undefined : fs.openSync(options.logFile, 'a');
  // A log file appended across restarts holds earlier starts' lines: this start's begin here.
  const startedAt = logFd === undefined ? 0 : fs.fstatSync(logFd).size;
  const child = spawn(process.execPath, args, {
    env: {
      PATH: process.env['PATH'] ?? '',
      IDEMPOTENCY_UPSTREAM: options.upstream,
      IDEMPOTENCY_PORT: String(options.port ?? 0),
      IDEMPOTENCY_ADMIN_PORT: String(options.adminPort ?? 0),
      IDEMPOTENCY_HOST: '127.0.0.1',
      IDEMPOTENCY_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
  });
  // The child holds its own copy of the descriptor.
  if (logFd !== undefined) fs.closeSync(logFd);
  live.add(child);
  killWithParent(child, 'sidecar');
  let captured = '';
  child.stdout?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  const logFile = options.logFile;
  const readOutput = (): string => (logFile === undefined ? captured : fs.readFileSync(logFile, 'utf8'));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    live.delete(child);
    resolve(code);
  }));

  // Logged once both listeners are bound: it names their ports (the scheme too: the proxy
  // listener speaks HTTPS when given a certificate; the admin listener is always plain HTTP).
  const ownOutput = (): string => (logFile === undefined ? captured : fs.readFileSync(logFile).subarray(startedAt).toString('utf8'));
  const listening = await waitForListening(child, ownOutput, 'idempotency-sidecar listening', 'sidecar');
  const proxyUrl = urlField(listening, 'proxy');
  const adminUrl = urlField(listening, 'admin');
  return {
    url: proxyUrl.origin,
    adminUrl: adminUrl.origin,
    port: Number(proxyUrl.port),
    adminPort: Number(adminUrl.port),
    process: child,
    output: readOutput,
    logs: () => jsonLines(readOutput()),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    kill: (signal = 'SIGKILL') => {
      child.kill(signal);
    },
  };
}

/** Runs the bin to completion (for start-up errors and --config-test). */
export function runSidecarCommand(args: readonly string[], env: Readonly<Record<string, string>>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
