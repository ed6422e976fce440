/**
 * The container image without a Docker engine (none runs here, so the image itself is never
 * built in this suite):
 *
 * 1. The Dockerfile's promises, read statically: multi-stage; the build stage runs npm ci, the
 *    build and a prune of dev dependencies; the final stage is the distroless :nonroot image with
 *    no RUN at all (there is no shell to run one), a non-root USER, a HEALTHCHECK and an
 *    ENTRYPOINT in exec form with node as PID 1, and copies only the runtime files.
 * 2. The final stage's file set, reproduced in a temporary directory from the Dockerfile's own
 *    COPY lines, with node_modules holding production dependencies only, outside this checkout so
 *    Node cannot fall back to its node_modules. From there the proxy serves and replays a request,
 *    `healthcheck` passes against it, and the webhook starts: every runtime dependency is a
 *    production one. Nothing is written into the directory while it runs (read-only root).
 *
 * By default the production node_modules is what `npm prune --omit=dev` leaves: the packages
 * package-lock.json does not mark `dev`, copied (not linked: Node resolves a symlink to its real
 * path and would find the dev packages next to it) from this checkout's node_modules. That takes
 * a second and needs no network. FULL_IMAGE_TEST=1 runs a real `npm ci --omit=dev` from the
 * registry instead, as the image build does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { DEFAULTS } from '../../src/config/schema';
import { urlField, waitForListening } from '../helpers/listening-line';
import { freshKey, send } from '../helpers/client';
import { startPaymentUpstream, type PaymentUpstream } from '../helpers/payment-upstream';
import { createCertificateAuthority, issueServerCertificate } from '../helpers/tls-certificates';
import { httpsRequest } from '../helpers/webhook-process';

const ROOT = path.resolve(__dirname, '..', '..');
const DISTROLESS = 'gcr.io/distroless/nodejs24-debian12:nonroot';
const BUILDER = 'node:24-bookworm-slim';
const NODE = '/nodejs/bin/node';

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

/** Dockerfile instructions, with comments dropped and `\` continuations joined. */
function instructionsOf(text: string): Instruction[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push(pending + line);
    pending = '';
  }
  return logical.map((line) => {
    const [keyword = '', ...rest] = line.split(/\s+/);
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
  });
}

function stagesOf(instructions: readonly Instruction[]): Stage[] {
  const stages: { from: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      stages.push({ from: match?.[1] ?? instruction.args, name: match?.[2], instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** The JSON array of an exec-form instruction, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  try {
    const parsed: unknown = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((part) => typeof part === 'string') ? parsed : undefined;
  } catch {
    return undefined;
  }
}

const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const stages = stagesOf(instructionsOf(dockerfile));
const build = stages[0] as Stage;
const final = stages.at(-1) as Stage;
const finalOf = (keyword: string): Instruction[] => final.instructions.filter((i) => i.keyword === keyword);

/** The final stage's copies, as [source in the build stage, destination in the image]. */
function finalCopies(): [string, string][] {
  return finalOf('COPY').map(({ args }) => {
    const parts = args.split(/\s+/).filter((part) => !part.startsWith('--'));
    return [parts[0] ?? '', parts[1] ?? ''];
  });
}

const WORKDIR = '/app';
const inWorkdir = (target: string): string => path.posix.normalize(path.posix.isAbsolute(target) ? target : path.posix.join(WORKDIR, target));

describe('the Dockerfile', () => {
  test(`is multi-stage: a ${BUILDER} build stage, then the distroless nonroot image of the same Node line`, () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(build.from).toBe(BUILDER);
    expect(build.name).toBe('build');
    expect(final.from).toBe(DISTROLESS);
  });

  test('both stages run the Node line package.json supports, the one the tests run on', () => {
    const { engines } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    const major = /^\^(\d+)\./.exec(engines.node)?.[1];
    expect(major).toBe(process.versions.node.split('.')[0]);
    expect(/^node:(\d+)-/.exec(build.from)?.[1]).toBe(major);
    expect(/\/nodejs(\d+)-/.exec(final.from)?.[1]).toBe(major);
  });

  test('the build stage installs from the lock file, builds, then drops the dev dependencies', () => {
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    const at = (pattern: RegExp): number => runs.findIndex((run) => pattern.test(run));
    expect(at(/^npm ci\b/)).toBeGreaterThanOrEqual(0);
    expect(at(/^npm run build\b/)).toBeGreaterThan(at(/^npm ci\b/));
    expect(at(/^npm prune\b.*--omit=dev/)).toBeGreaterThan(at(/^npm run build\b/));
    // What `npm run build` reads is in the stage before it runs.
    const copied = build.instructions.filter((i) => i.keyword === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const needed of ['package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', 'tsconfig.build.json', 'scripts/', 'src/']) {
      expect(copied).toContain(needed);
    }
  });

  test('the final stage runs nothing (no shell, no npm install) and copies only runtime files from the build stage', () => {
    expect(finalOf('RUN')).toEqual([]);
    expect(finalOf('ADD')).toEqual([]);
    expect(finalOf('WORKDIR').map((i) => i.args)).toEqual([WORKDIR]);
    for (const { args } of finalOf('COPY')) expect(args).toMatch(/^--from=build\s/);
    expect(finalCopies().map(([, target]) => inWorkdir(target)).sort()).toEqual(
      ['/app/bin', '/app/config', '/app/dist', '/app/node_modules', '/app/package.json'].sort(),
    );
  });

  test('runs as the non-root user of the distroless image', () => {
    expect(final.from.endsWith(':nonroot')).toBe(true);
    const users = finalOf('USER').map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).toMatch(/^(65532(:65532)?|nonroot(:nonroot)?)$/);
  });

  test('ENTRYPOINT is the exec form with node itself, so node is PID 1 and gets SIGTERM', () => {
    const entrypoints = finalOf('ENTRYPOINT');
    expect(entrypoints).toHaveLength(1);
    const entrypoint = execForm(entrypoints[0]?.args ?? '');
    expect(entrypoint).toBeDefined();
    expect(entrypoint?.[0]).toBe(NODE);
    expect(inWorkdir(entrypoint?.[1] ?? '')).toBe('/app/bin/idempotency-sidecar.js');
    expect(entrypoint).toHaveLength(2);
    expect(finalOf('CMD')).toEqual([]);
  });

  test("the final stage bounds V8's young generation with NODE_OPTIONS, which an operator can override", () => {
    const env = finalOf('ENV').map((i) => i.args);
    expect(env).toContain('NODE_OPTIONS="--max-semi-space-size=16"');
  });

  test('HEALTHCHECK runs the healthcheck subcommand with node, in exec form, within its timeout', () => {
    const checks = finalOf('HEALTHCHECK');
    expect(checks).toHaveLength(1);
    const match = /^(.*?)\bCMD\s+(.*)$/.exec(checks[0]?.args ?? '');
    const command = execForm(match?.[2] ?? '');
    expect(command?.[0]).toBe(NODE);
    expect(inWorkdir(command?.[1] ?? '')).toBe('/app/bin/idempotency-sidecar.js');
    expect(command?.[2]).toBe('healthcheck');
    // Docker's timeout must leave room for the check's own 2 s bound and Node's start.
    const timeout = /--timeout=(\d+)s/.exec(match?.[1] ?? '');
    expect(Number(timeout?.[1] ?? 30)).toBeGreaterThanOrEqual(3);
  });

  test('EXPOSEs the default proxy and admin ports', () => {
    const ports = finalOf('EXPOSE').flatMap((i) => i.args.split(/\s+/));
    expect(ports).toEqual(expect.arrayContaining([String(DEFAULTS.port), String(DEFAULTS.adminPort)]));
  });

  test('.dockerignore lets in what the build copies and keeps out local installs and builds', () => {
    const lines = fs
      .readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    expect(lines[0]).toBe('*');
    const allowed = lines.filter((line) => line.startsWith('!')).map((line) => line.slice(1));
    const copied = build.instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const source of copied) expect(allowed).toContain(source);
    expect(lines).toEqual(expect.arrayContaining(['**/node_modules', '**/dist']));
  });

  test('npm run docker:build builds it', () => {
    const scripts = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts['docker:build']).toBe('docker build -t idempotency-sidecar .');
  });
});

// ---------------------------------------------------------------------------------------------

const FULL = process.env['FULL_IMAGE_TEST'] === '1';

interface LockEntry {
  readonly dev?: boolean;
  readonly devOptional?: boolean;
}

/** Copies the production packages of the lock file from this checkout, as `npm prune --omit=dev` leaves them. */
function copyProductionModules(target: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const production = Object.entries(lock.packages)
    .filter(([location, entry]) => location.startsWith('node_modules/') && entry.dev !== true && entry.devOptional !== true)
    .map(([location]) => location)
    .sort((a, b) => a.length - b.length);
  expect(production.length).toBeGreaterThan(0);
  for (const location of production) {
    const from = path.join(ROOT, location);
    if (!fs.existsSync(from)) throw new Error(`${location} is in package-lock.json but not installed; run npm ci`);
    // A nested node_modules is copied as its own entries, so no dev package rides along.
    fs.cpSync(from, path.join(target, location), {
      recursive: true,
      filter: (source) => source === from || !path.relative(from, source).split(path.sep).includes('node_modules'),
    });
  }
}

function installProductionModules(target: string): void {
  fs.copyFileSync(path.join(ROOT, 'package-lock.json'), path.join(target, 'package-lock.json'));
  const result = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: target, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`npm ci --omit=dev failed:\n${result.stderr}`);
  fs.rmSync(path.join(target, 'package-lock.json'));
}

/** Every file under `dir` with its size and modification time: equal snapshots mean nothing was written. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (current: string): void => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      const stat = fs.lstatSync(full);
      out.push(`${path.relative(dir, full)} ${stat.size} ${stat.mtimeMs}`);
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out.sort();
}

function run(image: string, args: readonly string[], env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(image, 'bin', 'idempotency-sidecar.js'), ...args], {
    cwd: image,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    encoding: 'utf8',
    timeout: 15_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function waitHealthy(url: string, child: ChildProcess, output: () => string, ca?: Buffer): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output()}`);
    try {
      const status = url.startsWith('https:')
        ? (await httpsRequest(url, ca === undefined ? {} : { ca })).status
        : await new Promise<number>((resolve, reject) => http.get(url, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
      if (status === 200) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`not healthy within 15 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function startFrom(image: string, args: readonly string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [path.join(image, 'bin', 'idempotency-sidecar.js'), ...args], {
    cwd: image,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let captured = '';
  child.stdout?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  return { child, output: () => captured };
}

function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill('SIGTERM');
  });
}

describe(`the final stage's files, run on their own (${FULL ? 'npm ci --omit=dev' : 'production packages of the lock file'})`, () => {
  let base: string;
  let image: string;
  let upstream: PaymentUpstream;

  beforeAll(() => {
    // Under the OS temp dir, far from this checkout: no node_modules above it to fall back to.
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'sidecar-image-'));
    image = path.join(base, 'app');
    fs.mkdirSync(image);
    for (const [source, target] of finalCopies()) {
      const relative = path.posix.relative(WORKDIR, source);
      const destination = path.join(image, path.posix.relative(WORKDIR, inWorkdir(target)));
      if (relative === 'node_modules') continue;
      fs.cpSync(path.join(ROOT, relative), destination, { recursive: true });
    }
    if (FULL) installProductionModules(image);
    else copyProductionModules(image);
  }, FULL ? 300_000 : 60_000);

  afterAll(async () => {
    await upstream?.stop();
    if (base !== undefined) fs.rmSync(base, { recursive: true, force: true });
  });

  test('holds no dev dependency and no sources', () => {
    expect(fs.existsSync(path.join(image, 'src'))).toBe(false);
    expect(fs.existsSync(path.join(image, 'test'))).toBe(false);
    for (const dev of ['typescript', 'jest', 'ts-jest', 'testcontainers', '@types/node']) {
      expect(() => require.resolve(dev, { paths: [image] })).toThrow();
    }
    // The `node` devDependency is a whole Node binary for a checkout's scripts; the image has its own.
    expect(fs.existsSync(path.join(image, 'node_modules', 'node'))).toBe(false);
    for (const runtime of ['ioredis', 'pino', 'undici', 'zod', 'yaml']) {
      expect(require.resolve(runtime, { paths: [image] }).startsWith(image)).toBe(true);
    }
  });

  test('--help of the program and of each subcommand works', () => {
    for (const args of [['--help'], ['webhook', '--help'], ['healthcheck', '--help']]) {
      const result = run(image, args, {});
      expect({ args, status: result.status, stderr: result.stderr }).toEqual({ args, status: 0, stderr: '' });
      expect(result.stdout).toMatch(/^Usage: idempotency-sidecar/);
    }
  });

  test('the proxy serves and replays, healthcheck passes against it, and nothing is written to its directory', async () => {
    upstream = await startPaymentUpstream();
    const before = snapshot(image);
    const env = {
      IDEMPOTENCY_UPSTREAM: upstream.url,
      IDEMPOTENCY_PORT: '0',
      IDEMPOTENCY_ADMIN_PORT: '0',
      IDEMPOTENCY_HOST: '127.0.0.1',
      NODE_ENV: 'production',
    };
    const sidecar = startFrom(image, [], env);
    try {
      const listening = await waitForListening(sidecar.child, sidecar.output, 'idempotency-sidecar listening', 'sidecar');
      const proxyUrl = urlField(listening, 'proxy').origin;
      const adminPort = urlField(listening, 'admin').port;
      await waitHealthy(`http://127.0.0.1:${adminPort}/healthz`, sidecar.child, sidecar.output);
      const key = freshKey('image');
      const first = await send(proxyUrl, '/payments', { key, body: '{"amount":1}' });
      const second = await send(proxyUrl, '/payments', { key, body: '{"amount":1}' });
      expect(first.status).toBe(201);
      expect(second.header('idempotent-replayed')).toBe('true');
      expect(upstream.countKey(key)).toBe(1);

      // As Docker runs it: the container's variables, no flags.
      const check = run(image, ['healthcheck'], { IDEMPOTENCY_ADMIN_PORT: adminPort });
      expect(check.status).toBe(0);
    } finally {
      expect(await stop(sidecar.child)).toBe(0);
    }
    expect(snapshot(image)).toEqual(before);
  });

  test('the webhook starts and serves from it', async () => {
    const certs = path.join(base, 'certs');
    const ca = createCertificateAuthority(certs);
    const server = issueServerCertificate(ca, certs, 'webhook');
    const webhook = startFrom(image, ['webhook'], {
      IDEMPOTENCY_WEBHOOK_PORT: '0',
      IDEMPOTENCY_WEBHOOK_HOST: '127.0.0.1',
      IDEMPOTENCY_WEBHOOK_TLS_CERT: server.certPath,
      IDEMPOTENCY_WEBHOOK_TLS_KEY: server.keyPath,
      IDEMPOTENCY_WEBHOOK_SIDECAR_TEMPLATE: path.join(image, 'config', 'webhook-sidecar-template.yaml'),
    });
    try {
      const bound = urlField(await waitForListening(webhook.child, webhook.output, 'idempotency-sidecar webhook listening', 'webhook'), 'url');
      await waitHealthy(`${bound.origin}/healthz`, webhook.child, webhook.output, ca.cert);
    } finally {
      expect(await stop(webhook.child)).toBe(0);
    }
  });
});
