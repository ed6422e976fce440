/**
 * Real Redis servers for tests: the one helper every test that needs Redis uses.
 *
 * `startRedis()` runs `redis-server` on a port of its own (no persistence, a temp dir of its own;
 * see nextPort() for how ports are chosen) and resolves once it answers PING. Where redis-server is not on PATH but a Docker engine answers, it
 * runs the `redis:7` image with testcontainers instead (imported lazily: the suite needs no Docker
 * where redis-server exists). Tests never touch the Redis on 6379.
 *
 * Processes are tracked and killed even when a test fails or the worker dies: `stop()` in
 * afterAll is the normal path, an exit hook covers a plain Node process, and a watchdog (a `sh`
 * that holds a pipe from this process) kills the server when this process goes away by any means
 * - under Jest, a test file's `process` is a copy whose 'exit' event never fires, so the exit hook
 * alone would not do.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface StartRedisOptions {
  /**
   * Start the server with cluster mode on and all 16384 slots assigned to it: a one-node Redis
   * Cluster, which enforces the same-slot rule (CROSSSLOT) on every multi-key script.
   */
  readonly cluster?: boolean;
  /**
   * Durable: `--appendonly yes --appendfsync always` (every write is fsynced before its reply), so
   * a server stopped or killed and started again with restart() comes back with every write it
   * acknowledged. Needs `dataDir`. Process variant only.
   */
  readonly appendOnly?: boolean;
  /**
   * The server's directory, owned by the caller: reused by every start of this handle (restart()
   * comes back with the data) and never removed by the helper. Unset: a fresh temporary directory
   * per start, removed when the server stops (a restarted server comes back empty).
   */
  readonly dataDir?: string;
  /**
   * More `--name value` arguments, after the helper's own (a later one wins): a Cluster member
   * without slots, a replica (`--replicaof`), shorter timeouts. Process variant only.
   */
  readonly extraArgs?: readonly string[];
  /**
   * Run a Sentinel: this text is written to `sentinel.conf` in the server's directory (Sentinel
   * rewrites it, so it must be writable) and the server starts with `--sentinel`. Process variant only.
   */
  readonly sentinelConf?: string;
  /**
   * A TLS port too (the plain port stays, for the helper's own PING and a test's set-up), on a
   * port of its own, kept across restart(). Process variant only.
   */
  readonly tls?: RedisTlsServerOptions;
  /**
   * ACL users, each a `user` line of redis.conf without the word `user`
   * (`sidecar on >secret ~idem:* +ping`). The default user stays as it is. Process variant only.
   */
  readonly users?: readonly string[];
}

export interface RedisTlsServerOptions {
  /** PEM certificate and key the server presents. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA that client certificates must be signed by. */
  readonly caFile: string;
  /** `tls-auth-clients`: true (the default) requires a client certificate. */
  readonly authClients?: boolean;
}

export interface RedisHandle {
  readonly url: string;
  /** `rediss://127.0.0.1:<tlsPort>`, when started with `tls`. */
  readonly tlsUrl?: string;
  readonly tlsPort?: number;
  readonly host: string;
  readonly port: number;
  /** `process` (a local redis-server) or `container` (Docker, via testcontainers). */
  readonly kind: 'process' | 'container';
  /** Stops the server gracefully (SIGTERM); resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; resolves once it has exited. Process variant only. */
  kill(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but stops answering. Process variant only. */
  pause(): void;
  /** SIGCONT after pause(). Process variant only. */
  resume(): void;
  /**
   * Stops the server if it runs (or starts it again after stop() or kill()) on the same port:
   * empty without persistence, with its data when started with `appendOnly` and `dataDir`.
   */
  restart(): Promise<void>;
}

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 10_000;

/**
 * Redis ports come from 20000-32767: below the system's ephemeral ports (32768 and up on Linux,
 * 49152 and up on macOS), so no outgoing connection and no listener on port 0 (the sidecars, the
 * upstreams) ever takes one, not even while a server restarts on its own port. Every test process
 * starts at a place of its own in the range (from its pid) and walks it; a port that a server of
 * another test process (another jest worker, another checkout) holds is found at bind, where
 * redis-server says so and exits, and the next port is tried.
 */
const PORT_BASE = 20_000;
const PORT_SPAN = 12_768;
const BIND_ATTEMPTS = 20;
let portCursor = (process.pid * 7_919) % PORT_SPAN;

function nextPort(): number {
  portCursor = (portCursor + 1) % PORT_SPAN;
  return PORT_BASE + portCursor;
}

/** The port asked for is another process's: try the next one. */
class PortTakenError extends Error {}
const NO_REDIS_MESSAGE =
  'Tests need a Redis server and found none: install redis-server (Debian/Ubuntu: `apt-get install redis-server`; ' +
  'macOS: `brew install redis`) so that it is on PATH (or set REDIS_SERVER_BIN to its path), ' +
  'or start a Docker engine so that testcontainers can run the redis:7 image.';

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisHandle> {
  if (options.appendOnly === true && options.dataDir === undefined) {
    throw new TypeError('startRedis: appendOnly needs a dataDir (a fresh directory per start would drop the data)');
  }
  const binary = findRedisServer();
  if (binary !== undefined) return startProcess(binary, options);
  if (
    options.appendOnly === true ||
    options.dataDir !== undefined ||
    options.tls !== undefined ||
    options.users !== undefined ||
    options.extraArgs !== undefined ||
    options.sentinelConf !== undefined
  ) {
    throw new Error(`startRedis: appendOnly, dataDir, tls, users, extraArgs and sentinelConf need a local redis-server process. ${NO_REDIS_MESSAGE}`);
  }
  return startContainer(options);
}

// ---------------------------------------------------------------- the local redis-server process

/** Servers still running, killed on exit whatever happened to the tests. */
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

function findRedisServer(): string | undefined {
  const explicit = process.env['REDIS_SERVER_BIN'];
  if (explicit) return explicit;
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface Running {
  readonly child: ChildProcess;
  readonly watchdog: ChildProcess;
  readonly dir: string;
  /** The directory is the caller's (options.dataDir): never removed here. */
  readonly ownedByCaller: boolean;
}

async function startProcess(binary: string, options: StartRedisOptions): Promise<RedisHandle> {
  installExitHook();
  let port = 0;
  let tlsPort: number | undefined;
  let current: Running | undefined;
  for (let attempt = 1; current === undefined; attempt += 1) {
    port = nextPort();
    tlsPort = options.tls === undefined ? undefined : nextPort();
    try {
      current = await spawnServer(binary, port, tlsPort, options);
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= BIND_ATTEMPTS) throw error;
    }
  }

  const signal = (name: NodeJS.Signals): void => {
    if (current === undefined || current.child.exitCode !== null || current.child.signalCode !== null) {
      throw new Error(`redis-server on port ${port} is not running (cannot send ${name})`);
    }
    current.child.kill(name);
  };

  const end = async (how: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    const server = current;
    current = undefined;
    if (server === undefined) return;
    await terminate(server, how);
  };

  return {
    url: `redis://${HOST}:${port}`,
    ...(tlsPort === undefined ? {} : { tlsUrl: `rediss://${HOST}:${tlsPort}`, tlsPort }),
    host: HOST,
    port,
    kind: 'process',
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    restart: async () => {
      await end('SIGTERM');
      current = await spawnServer(binary, port, tlsPort, options);
    },
  };
}

async function spawnServer(binary: string, port: number, tlsPort: number | undefined, options: StartRedisOptions): Promise<Running> {
  // A fresh directory per start: a restarted server comes back empty, as without persistence.
  // A caller's directory is reused as is, and stays.
  const ownedByCaller = options.dataDir !== undefined;
  const dir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'idem-redis-'));
  if (!ownedByCaller) tempDirs.add(dir);
  let sentinel: string[] = [];
  if (options.sentinelConf !== undefined) {
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, options.sentinelConf);
    // The config file must come first; Sentinel takes no persistence options.
    sentinel = [conf, '--sentinel'];
  }
  const args = [
    ...sentinel,
    '--port', String(port),
    '--bind', HOST,
    ...(sentinel.length > 0
      ? []
      : ['--save', '', ...(options.appendOnly === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'])]),
    '--dir', dir,
    '--daemonize', 'no',
    '--logfile', '',
    ...(options.cluster === true
      ? // A lone node reports an empty address in CLUSTER SLOTS, which clients skip: announce one.
        ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', HOST]
      : []),
    ...(options.tls === undefined || tlsPort === undefined
      ? []
      : [
          '--tls-port', String(tlsPort),
          '--tls-cert-file', options.tls.certFile,
          '--tls-key-file', options.tls.keyFile,
          '--tls-ca-cert-file', options.tls.caFile,
          '--tls-auth-clients', options.tls.authClients === false ? 'no' : 'yes',
          // A Cluster over TLS: CLUSTER SLOTS then names the TLS port, where clients must go.
          ...(options.cluster === true ? ['--tls-cluster', 'yes'] : []),
        ]),
    // One `--user` per user: redis-server turns each `--name` and the words after it into one line.
    ...(options.users ?? []).flatMap((user) => ['--user', ...user.trim().split(/\s+/)]),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) {
    // spawn failed (not found, not executable): the reason comes as an 'error' event.
    const [error] = (await once(child, 'error')) as [Error];
    if (!ownedByCaller) {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    }
    throw new Error(`could not run ${binary}: ${error.message}\n${NO_REDIS_MESSAGE}`, { cause: error });
  }
  child.on('error', () => undefined);
  running.add(child);
  child.once('exit', () => running.delete(child));

  // Keep the last few KiB of the server's log for the error message if it does not come up.
  let log = '';
  const keep = (chunk: Buffer): void => {
    log = (log + chunk.toString()).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  // Neither the server nor its pipes keep a test worker alive: afterAll or the hooks end it.
  child.unref();
  unrefStream(child.stdout);
  unrefStream(child.stderr);

  const watchdog = startWatchdog(child, ownedByCaller ? '' : dir);
  const server: Running = { child, watchdog, dir, ownedByCaller };
  try {
    await waitForPong(port, child, () => log);
    if (options.cluster === true) await assignAllSlots(port);
    return server;
  } catch (error) {
    await terminate(server, 'SIGKILL');
    throw error;
  }
}

/**
 * A `sh` that kills the server and removes its directory (none when `dir` is empty: a caller's
 * directory) when this process's end of its stdin pipe closes: on a normal exit, a crash or a
 * SIGKILL alike (the kernel closes the pipe). stop() does both itself and kills the watchdog.
 */
function startWatchdog(child: ChildProcess, dir: string): ChildProcess {
  const pid = child.pid;
  if (pid === undefined) throw new Error('redis-server did not start');
  // The pid and the directory are passed as arguments ($1, $2), not spliced into the script.
  const script = 'read _ignored; kill -9 "$1" 2>/dev/null; sleep 0.2; [ -n "$2" ] && rm -rf "$2"';
  const watchdog = spawn('sh', ['-c', script, 'redis-watchdog', String(pid), dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  unrefStream(watchdog.stdin);
  return watchdog;
}

function unrefStream(stream: unknown): void {
  // The child's pipes are net.Sockets; unref is there at run time but not on the declared type.
  if (stream instanceof net.Socket) stream.unref();
}

async function terminate(server: Running, how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const { child, watchdog } = server;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill(how);
    // A paused server only acts on SIGTERM once it runs again.
    child.kill('SIGCONT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
  running.delete(child);
  watchdog.kill('SIGKILL');
  if (!server.ownedByCaller) {
    rmSync(server.dir, { recursive: true, force: true });
    tempDirs.delete(server.dir);
  }
}

// ---------------------------------------------------------------- a tiny RESP client for set-up

/** Sends one inline command and resolves with the raw reply's first line (or bulk payload). */
function rawCommand(port: number, command: string, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    let data = '';
    const finish = (error: Error | null, reply?: string): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(reply ?? '');
    };
    const timer = setTimeout(() => finish(new Error(`no reply to ${command} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (error) => finish(error));
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      const lineEnd = data.indexOf('\r\n');
      if (lineEnd === -1) return;
      const first = data.slice(0, lineEnd);
      if (first.startsWith('$')) {
        const length = Number(first.slice(1));
        if (length < 0) return finish(null, '');
        const payload = data.slice(lineEnd + 2);
        if (Buffer.byteLength(payload) >= length + 2) finish(null, payload.slice(0, length));
        return;
      }
      if (first.startsWith('-')) return finish(new Error(`${command}: ${first.slice(1)}`));
      finish(null, first.slice(1));
    });
  });
}

async function waitForPong(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      // "Could not create server TCP listening socket ...: bind: Address already in use"
      if (/Address already in use/.test(log())) throw new PortTakenError(`port ${port} is taken`);
      throw new Error(`redis-server on port ${port} exited before answering:\n${log()}`);
    }
    try {
      if ((await rawCommand(port, 'PING', 250)) === 'PONG') {
        // A server that answers is ours only if it says so: another process's server may hold
        // the port while ours, failing to bind it, has not exited yet.
        const pid = /^process_id:(\d+)/m.exec(await rawCommand(port, 'INFO server', 1_000))?.[1];
        if (Number(pid) === child.pid) return;
        throw new PortTakenError(`port ${port} is held by redis-server pid ${pid ?? '?'}`);
      }
    } catch (error) {
      if (error instanceof PortTakenError) throw error;
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING:\n${log()}`);
    await sleep(20);
  }
}

async function assignAllSlots(port: number): Promise<void> {
  await rawCommand(port, 'CLUSTER ADDSLOTSRANGE 0 16383');
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await rawCommand(port, 'CLUSTER INFO')).includes('cluster_state:ok')) {
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port}: cluster state never became ok`);
    await sleep(20);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- the Docker fallback

async function startContainer(options: StartRedisOptions): Promise<RedisHandle> {
  let testcontainers: typeof import('testcontainers');
  try {
    testcontainers = await import('testcontainers');
    // Throws when no container runtime answers.
    await testcontainers.getContainerRuntimeClient();
  } catch (error) {
    throw new Error(NO_REDIS_MESSAGE, { cause: error });
  }
  // A fixed host port, so that restart() comes back where the clients expect it.
  const port = nextPort();
  const command = [
    'redis-server',
    '--save', '',
    '--appendonly', 'no',
    ...(options.cluster === true ? ['--cluster-enabled', 'yes', '--cluster-announce-ip', HOST, '--cluster-announce-port', String(port)] : []),
  ];
  const start = async (): Promise<import('testcontainers').StartedTestContainer> => {
    const started = await new testcontainers.GenericContainer('redis:7')
      .withCommand(command)
      .withExposedPorts({ container: 6379, host: port })
      .withWaitStrategy(testcontainers.Wait.forLogMessage('Ready to accept connections'))
      .start();
    if (options.cluster === true) await assignAllSlots(port);
    return started;
  };
  let container: import('testcontainers').StartedTestContainer | undefined = await start();
  const processOnly = (what: string): never => {
    throw new Error(`${what}() needs a local redis-server process; this Redis runs in Docker (install redis-server to run this test)`);
  };
  const stop = async (): Promise<void> => {
    const started = container;
    container = undefined;
    if (started) await started.stop();
  };
  return {
    url: `redis://${HOST}:${port}`,
    host: HOST,
    port,
    kind: 'container',
    stop,
    kill: () => Promise.resolve(processOnly('kill')),
    pause: () => processOnly('pause'),
    resume: () => processOnly('resume'),
    restart: async () => {
      await stop();
      container = await start();
    },
  };
}
