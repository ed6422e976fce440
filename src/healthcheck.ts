/**
 * `idempotency-sidecar healthcheck`: GET /healthz on the admin listener of a sidecar running in
 * the same container; exit 0 when it answers 200, else 1, within 2 s. It is the image's Docker
 * HEALTHCHECK, since a distroless image has no curl or shell.
 *
 * The admin port and the host are read as the proxy reads them, by the same reader and rows
 * (config/table.ts marks them as read by the healthcheck): the flag, else the variable, else the
 * YAML file (--config or IDEMPOTENCY_CONFIG), else the default. Docker runs the check without the
 * entrypoint's arguments, so in an image set the port by variable or file, not by flag. The
 * address is 127.0.0.1 when the listeners are bound to all addresses.
 *
 * Every failure, a bad setting included, exits 1: Docker reads 1 as unhealthy and reserves 2.
 * Deliberately light: no proxy, store or logger modules are loaded for a check that runs every
 * few seconds; the settings table and its checks are all it loads.
 */
import http from 'node:http';
import { checkRows, describeIssues, formatHelp, gather, rowsOf, type CommandReading, type Env } from './config/reader';
import { SIDECAR, SIDECAR_SETTINGS } from './config/table';

const PROGRAM = 'idempotency-sidecar healthcheck';
export const HEALTHCHECK_TIMEOUT_MS = 2_000;

/** How the healthcheck reads the sidecar's settings: only the rows that say the healthcheck reads them. */
const HEALTHCHECK_READING: CommandReading<typeof SIDECAR_SETTINGS> = {
  group: SIDECAR,
  command: 'healthcheck',
  actions: ['help'],
  helpFlag: 'healthcheck --help',
  example: '--admin-port 9090',
};

export const HEALTHCHECK_HELP = formatHelp(HEALTHCHECK_READING, [
  'Usage: idempotency-sidecar healthcheck [flags]',
  '',
  `GET http://127.0.0.1:<admin port>/healthz; exit 0 when it answers 200, else 1, within ${HEALTHCHECK_TIMEOUT_MS / 1000} s.`,
  "For the container image's HEALTHCHECK (Docker runs it without the entrypoint's flags): the settings",
  'below are read as the proxy reads them, from the flag, else the variable, else the YAML file; a host',
  'of 0.0.0.0 (all addresses) is checked at 127.0.0.1.',
]);

export interface HealthTarget {
  readonly url: string;
}

/** Where to look, or a one-line problem naming the setting. */
export function healthTarget(argv: readonly string[], env: Env, readFile?: (path: string) => string): HealthTarget | { readonly problem: string } {
  const gathered = gather(HEALTHCHECK_READING, { argv, env, ...(readFile === undefined ? {} : { readFile }) });
  const rows = checkRows(HEALTHCHECK_READING, gathered.raw);
  // The file is the proxy's: what is wrong with its other settings is the proxy's to report.
  const read = new Set(rowsOf(HEALTHCHECK_READING).map(([name]) => name));
  const issues = rows.issues.filter((issue) => read.has(issue.setting));
  const [problem] = [...gathered.problems, ...describeIssues(SIDECAR, issues, gathered.sources)];
  if (problem !== undefined) return { problem };
  const { adminPort, host } = rows.values;
  if (adminPort === 0) {
    return { problem: `${describeIssues(SIDECAR, [{ setting: 'adminPort', message: '0 binds a free port at start, which this check cannot know; give the bound port (the "listening" log line names it) with --admin-port' }], gathered.sources)[0] ?? ''}` };
  }
  const address = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const bracketed = address.includes(':') ? `[${address}]` : address;
  return { url: `http://${bracketed}:${adminPort}/healthz` };
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
