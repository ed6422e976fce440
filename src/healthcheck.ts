/**
 * `idempotency-sidecar healthcheck`: GET /healthz on the admin listener of a sidecar running in
 * the same container; exit 0 when it answers 200, else 1, within 2 s. It is the image's Docker
 * HEALTHCHECK, since a distroless image has no curl or shell.
 *
 * The admin port is found as the proxy finds it: --admin-port, else IDEMPOTENCY_ADMIN_PORT, else
 * `adminPort` in the YAML file (--config or IDEMPOTENCY_CONFIG), else 9090. Docker runs the check
 * without the entrypoint's arguments, so in an image set the port by variable or file, not by flag.
 * The address is 127.0.0.1, or IDEMPOTENCY_HOST (or `host`) when the listeners are bound to one
 * address rather than all of them.
 *
 * Every failure, a bad setting included, exits 1: Docker reads 1 as unhealthy and reserves 2.
 * Deliberately light: no proxy, store or logger modules are loaded for a check that runs every
 * few seconds.
 */
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';

const PROGRAM = 'idempotency-sidecar healthcheck';
export const HEALTHCHECK_TIMEOUT_MS = 2_000;
const DEFAULT_ADMIN_PORT = 9090;

export const HEALTHCHECK_HELP = `Usage: idempotency-sidecar healthcheck [flags]

GET http://127.0.0.1:<admin port>/healthz; exit 0 when it answers 200, else 1, within ${HEALTHCHECK_TIMEOUT_MS / 1000} s.
For the container image's HEALTHCHECK (Docker runs it without the entrypoint's flags).

Flags:
  -h, --help               print this help and exit
  --admin-port VALUE       admin port; else IDEMPOTENCY_ADMIN_PORT, else adminPort in the YAML file, else ${DEFAULT_ADMIN_PORT}
  --host VALUE             listeners' address; else IDEMPOTENCY_HOST, else host in the YAML file; 0.0.0.0 or unset: 127.0.0.1
  --config PATH            the YAML file; else IDEMPOTENCY_CONFIG
`;

export interface HealthTarget {
  readonly url: string;
}

function portOf(value: unknown): number | undefined {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65_535 ? n : undefined;
}

/** Where to look, or a one-line problem naming the setting. */
export function healthTarget(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): HealthTarget | { readonly problem: string } {
  let values: { 'admin-port'?: string | boolean; host?: string | boolean; config?: string | boolean };
  try {
    values = parseArgs({
      args: [...argv],
      options: { 'admin-port': { type: 'string' }, host: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    return { problem: `command line: ${error instanceof Error ? error.message : String(error)} (see healthcheck --help)` };
  }

  let file: Record<string, unknown> = {};
  const configPath = typeof values.config === 'string' ? values.config : env['IDEMPOTENCY_CONFIG'];
  const fileNamedBy = typeof values.config === 'string' ? '--config' : 'IDEMPOTENCY_CONFIG';
  const needsFile = values['admin-port'] === undefined && env['IDEMPOTENCY_ADMIN_PORT'] === undefined;
  if (configPath !== undefined && configPath !== '' && (needsFile || (values.host === undefined && env['IDEMPOTENCY_HOST'] === undefined))) {
    try {
      const parsed: unknown = parseYaml(readFileSync(configPath, 'utf8'));
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) file = parsed as Record<string, unknown>;
    } catch (error) {
      return { problem: `${fileNamedBy} ${configPath}: cannot be read (${error instanceof Error ? error.message : String(error)})` };
    }
  }

  const portSources: [string, unknown][] = [
    ['--admin-port', values['admin-port']],
    ['IDEMPOTENCY_ADMIN_PORT', env['IDEMPOTENCY_ADMIN_PORT']],
    [`${configPath ?? ''}: adminPort`, file['adminPort'] ?? undefined],
  ];
  let port = DEFAULT_ADMIN_PORT;
  const portSource = portSources.find(([, value]) => value !== undefined);
  if (portSource !== undefined) {
    if (String(portSource[1]).trim() === '0') {
      return { problem: `${portSource[0]}: 0 binds a free port at start, which this check cannot know; give the bound port (the "listening" log line names it) with --admin-port` };
    }
    const parsed = portOf(portSource[1]);
    if (parsed === undefined) return { problem: `${portSource[0]}: ${JSON.stringify(portSource[1])} is not a port; use a whole number from 1 to 65535` };
    port = parsed;
  }

  const hostSource = [values.host, env['IDEMPOTENCY_HOST'], file['host']].find((value) => value !== undefined && value !== null);
  const host = typeof hostSource === 'string' ? hostSource.trim() : '';
  const address = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const bracketed = address.includes(':') ? `[${address}]` : address;
  return { url: `http://${bracketed}:${port}/healthz` };
}

/** One GET, bounded by the timeout as a whole (connect, headers and body). Resolves to the exit code. */
export function checkHealth(url: string, timeoutMs = HEALTHCHECK_TIMEOUT_MS): Promise<{ readonly code: 0 | 1; readonly message: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (code: 0 | 1, message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      resolve({ code, message });
    };
    const request = http.get(url, { agent: false, headers: { connection: 'close' } }, (response) => {
      response.resume();
      response.on('end', () =>
        response.statusCode === 200 ? finish(0, `healthy: ${url} answered 200`) : finish(1, `unhealthy: ${url} answered ${response.statusCode ?? '?'}`),
      );
      response.on('error', (error) => finish(1, `unhealthy: ${url}: ${error.message}`));
    });
    request.on('error', (error) => finish(1, `unhealthy: ${url}: ${error.message}`));
    const timer = setTimeout(() => finish(1, `unhealthy: ${url} did not answer within ${timeoutMs} ms`), timeoutMs);
  });
}

/** The subcommand: prints one line (Docker keeps it in the container's health log) and exits. */
export function runHealthcheck(argv: readonly string[], env: NodeJS.ProcessEnv): void {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HEALTHCHECK_HELP);
    return;
  }
  const target = healthTarget(argv, env);
  if ('problem' in target) {
    process.stderr.write(`${PROGRAM}: ${target.problem}\n`);
    process.exit(1);
  }
  void checkHealth(target.url).then(({ code, message }) => {
    (code === 0 ? process.stdout : process.stderr).write(`${PROGRAM}: ${message}\n`);
    process.exit(code);
  });
}
