/**
 * What the fault suite runs against: N sidecar replicas (each its own OS process, started through
 * the package's bin) sharing one store Redis (durable: AOF, fsync always, same directory across
 * restarts), with the per-key locks on a quorum of three independent lock Redis (no persistence),
 * in front of the ledger upstream. Every fault the suite injects is a method here, and each one is
 * recorded with its time in `events`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type RedisHandle, startRedis } from '../helpers/redis-server';
import { type SidecarProcess, startSidecar } from '../helpers/sidecar-process';
import { type LedgerUpstream, startLedgerUpstream } from './ledger-upstream';

export interface FaultEvent {
  /** ms since the scenario started. */
  readonly at: number;
  readonly iso: string;
  readonly kind: string;
  readonly target: string;
  readonly detail?: string;
  /** For a SIGKILL or SIGSTOP: client requests on the replica at that moment. */
  readonly clientRequests?: number;
}

export type ReplicaState = 'up' | 'paused' | 'down';

export interface Replica {
  readonly index: number;
  /**
   * Where it listens: bound on port 0 by its first start (0 until then), and kept by a restart,
   * as an orchestrator keeps a pod's ports, unless that port was taken meanwhile.
   */
  port: number;
  adminPort: number;
  url: string;
  state: ReplicaState;
  process: SidecarProcess | undefined;
  /** Starts so far (1 + restarts after a crash or a configuration change). */
  generation: number;
  /** Client requests on this replica right now (the workload keeps it). */
  inFlight: number;
}

export interface ClusterOptions {
  readonly replicas: number;
  /** Where replica logs go, one file per replica (appended across restarts). */
  readonly logDir: string;
}

export const LOCK_MASTERS = 3;

export class FaultCluster {
  readonly events: FaultEvent[] = [];
  private scenarioStart = Date.now();
  private env: Readonly<Record<string, string>> = {};
  private storeUp = true;
  private readonly lockUp: boolean[] = Array.from({ length: LOCK_MASTERS }, () => true);

  private constructor(
    readonly upstream: LedgerUpstream,
    readonly store: RedisHandle,
    readonly locks: readonly RedisHandle[],
    readonly replicas: readonly Replica[],
    private readonly storeDir: string,
    private readonly logDir: string,
  ) {}

  static async start(options: ClusterOptions): Promise<FaultCluster> {
    fs.mkdirSync(options.logDir, { recursive: true });
    const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'idem-faults-store-'));
    const started: { upstream?: LedgerUpstream; store?: RedisHandle; locks: RedisHandle[] } = { locks: [] };
    try {
      started.upstream = await startLedgerUpstream();
      started.store = await startRedis({ appendOnly: true, dataDir: storeDir });
      for (let i = 0; i < LOCK_MASTERS; i++) started.locks.push(await startRedis());
      const replicas: Replica[] = [];
      for (let index = 0; index < options.replicas; index++) {
        replicas.push({ index, port: 0, adminPort: 0, url: '', state: 'down', process: undefined, generation: 0, inFlight: 0 });
      }
      return new FaultCluster(started.upstream, started.store, started.locks, replicas, storeDir, options.logDir);
    } catch (error) {
      await started.upstream?.stop();
      await started.store?.stop();
      for (const lock of started.locks) await lock.stop();
      fs.rmSync(storeDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The sidecar's configuration: the store and the lock quorum are always these. */
  private sidecarEnv(): Record<string, string> {
    return {
      IDEMPOTENCY_REDIS_URL: this.store.url,
      IDEMPOTENCY_REDLOCK_URLS: this.locks.map((lock) => lock.url).join(','),
      ...this.env,
    };
  }

  /**
   * Makes every replica run with `env` (restarting those that ran with another), every Redis
   * run, and starts the scenario's clock.
   */
  async beginScenario(env: Readonly<Record<string, string>>): Promise<void> {
    const changed = JSON.stringify(env) !== JSON.stringify(this.env);
    this.env = env;
    await this.heal();
    if (changed) {
      for (const replica of this.replicas) {
        if (replica.process !== undefined) await this.stopReplica(replica);
      }
    }
    await Promise.all(this.replicas.filter((r) => r.state === 'down').map((r) => this.startReplica(r)));
    this.events.length = 0;
    this.scenarioStart = Date.now();
  }

  /** ms since the scenario started. */
  now(): number {
    return Date.now() - this.scenarioStart;
  }

  get startedAt(): number {
    return this.scenarioStart;
  }

  record(kind: string, target: string, detail?: string, clientRequests?: number): void {
    this.events.push({
      at: this.now(),
      iso: new Date().toISOString(),
      kind,
      target,
      ...(detail === undefined ? {} : { detail }),
      ...(clientRequests === undefined ? {} : { clientRequests }),
    });
  }

  logFiles(): string[] {
    return this.replicas.map((replica) => this.logFile(replica));
  }

  private logFile(replica: Replica): string {
    return path.join(this.logDir, `replica-${replica.index}.log`);
  }

  /** A random replica a load balancer would send to: any that is not known dead (a frozen one looks alive). */
  pick(random: () => number, exclude?: Replica): Replica | undefined {
    const live = this.replicas.filter((r) => r.state !== 'down');
    const preferred = live.filter((r) => r !== exclude);
    const from = preferred.length > 0 ? preferred : live;
    return from[Math.floor(random() * from.length)];
  }

  private async startReplica(replica: Replica): Promise<void> {
    fs.appendFileSync(this.logFile(replica), `# start generation ${replica.generation + 1} at ${new Date().toISOString()}\n`);
    const start = (ports: { port?: number; adminPort?: number }): Promise<SidecarProcess> =>
      startSidecar({ upstream: this.upstream.url, ...ports, logFile: this.logFile(replica), env: this.sidecarEnv() });
    const previous = replica.port === 0 ? {} : { port: replica.port, adminPort: replica.adminPort };
    try {
      replica.process = await start(previous);
    } catch (error) {
      // Something else bound a port of this replica while it was down: it comes back elsewhere.
      if (!(error instanceof Error) || !/already in use/.test(error.message) || replica.port === 0) throw error;
      replica.process = await start({});
    }
    replica.port = replica.process.port;
    replica.adminPort = replica.process.adminPort;
    replica.url = replica.process.url;
    replica.generation++;
    replica.state = 'up';
  }

  private async stopReplica(replica: Replica): Promise<void> {
    const running = replica.process;
    replica.state = 'down';
    replica.process = undefined;
    if (running === undefined) return;
    running.kill('SIGCONT');
    await running.stop();
  }

  // ------------------------------------------------------------------------------------ faults

  /** SIGKILL: the replica dies mid-request; it is marked dead so clients stop picking it. */
  async killReplica(replica: Replica, upstreamInFlight: number): Promise<void> {
    const running = replica.process;
    if (running === undefined) return;
    replica.state = 'down';
    replica.process = undefined;
    const exited = new Promise<void>((resolve) => {
      if (running.process.exitCode !== null || running.process.signalCode !== null) resolve();
      else running.process.once('exit', () => resolve());
    });
    running.kill('SIGKILL');
    this.record('SIGKILL', `replica-${replica.index}`, `pid ${running.process.pid}; client requests on it: ${replica.inFlight}; upstream calls in progress (all replicas): ${upstreamInFlight}`, replica.inFlight);
    await exited;
  }

  /** Starts a dead replica again on the same ports (as an orchestrator would). */
  async restartReplica(replica: Replica): Promise<void> {
    if (replica.state !== 'down') return;
    await this.startReplica(replica);
    this.record('restart', `replica-${replica.index}`, `ports ${replica.port}, admin ${replica.adminPort}; generation ${replica.generation}`);
  }

  /** SIGSTOP: frozen, its connections stay open and its lock and lease run out. */
  pauseReplica(replica: Replica): void {
    if (replica.process === undefined || replica.state !== 'up') return;
    replica.process.kill('SIGSTOP');
    replica.state = 'paused';
    this.record('SIGSTOP', `replica-${replica.index}`, `pid ${replica.process.process.pid}; client requests on it: ${replica.inFlight}`, replica.inFlight);
  }

  resumeReplica(replica: Replica): void {
    if (replica.process === undefined || replica.state !== 'paused') return;
    replica.process.kill('SIGCONT');
    replica.state = 'up';
    this.record('SIGCONT', `replica-${replica.index}`, `client requests on it: ${replica.inFlight}`);
  }

  async stopStore(how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (!this.storeUp) return;
    this.storeUp = false;
    this.record(how === 'SIGTERM' ? 'stop' : 'SIGKILL', 'store-redis', how === 'SIGTERM' ? 'graceful stop' : 'crash (AOF fsync always keeps every acknowledged write)');
    await (how === 'SIGTERM' ? this.store.stop() : this.store.kill());
  }

  async startStore(): Promise<void> {
    if (this.storeUp) return;
    await this.store.restart();
    this.storeUp = true;
    this.record('restart', 'store-redis', 'same port and data directory (AOF reloaded)');
  }

  async stopLock(index: number): Promise<void> {
    const lock = this.locks[index];
    if (lock === undefined || this.lockUp[index] !== true) return;
    this.lockUp[index] = false;
    const down = this.lockUp.filter((up) => !up).length;
    this.record('stop', `lock-redis-${index}`, `${down} of ${LOCK_MASTERS} lock masters down`);
    await lock.stop();
  }

  async startLock(index: number): Promise<void> {
    const lock = this.locks[index];
    if (lock === undefined || this.lockUp[index] !== false) return;
    await lock.restart();
    this.lockUp[index] = true;
    const down = this.lockUp.filter((up) => !up).length;
    this.record('restart', `lock-redis-${index}`, `empty (no persistence); ${down} of ${LOCK_MASTERS} lock masters down`);
  }

  /** Undoes every fault still in force: resumes, restarts, starts Redis again. */
  async heal(): Promise<void> {
    for (const replica of this.replicas) {
      if (replica.state === 'paused') this.resumeReplica(replica);
    }
    await this.startStore();
    for (let i = 0; i < LOCK_MASTERS; i++) await this.startLock(i);
    for (const replica of this.replicas) {
      if (replica.state === 'down' && replica.generation > 0) await this.restartReplica(replica);
    }
  }

  /** Resolves once every replica answers readiness (the store answers it). */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const replica of this.replicas) {
      for (;;) {
        try {
          const response = await fetch(`http://127.0.0.1:${replica.adminPort}/readyz`, { signal: AbortSignal.timeout(1_000) });
          if (response.ok) break;
        } catch {
          // not ready yet
        }
        if (Date.now() > deadline) throw new Error(`replica-${replica.index} not ready within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** Stops everything this cluster started, whatever state the faults left it in. */
  async stop(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (work: () => Promise<unknown>): Promise<void> => {
      try {
        await work();
      } catch (error) {
        errors.push(error);
      }
    };
    for (const replica of this.replicas) await attempt(() => this.stopReplica(replica));
    await attempt(() => this.upstream.stop());
    await attempt(() => this.store.stop());
    for (const lock of this.locks) await attempt(() => lock.stop());
    fs.rmSync(this.storeDir, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'fault cluster: some processes did not stop cleanly');
  }
}
