/**
 * The program: action flags, configuration, start, and signals. Exit codes: 0 after a clean stop
 * (SIGTERM, SIGINT) or a successful --config-test; 2 for a configuration problem, with one line
 * per problem naming the setting; 1 for anything unforeseen.
 */
import { exitWithConfigProblems, runUntilSignal } from './process-lifecycle';
import { ConfigError } from './errors';
import { formatHelp, loadSettings, parseCommandLine, redactSettings, type LoadedSettings, unknownEnvironmentVariables } from './config/load';
import { suggest } from './config/checks';
import { runHealthcheck } from './healthcheck';
import { createLogger } from './observability/logger';
import { runWebhook } from './webhook/command';

const PROGRAM = 'idempotency-sidecar';

function version(): string {
  // Read at run time so the compiled file does not embed a stale copy.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../package.json') as { version: string }).version;
}

function fail(problems: readonly string[]): never {
  return exitWithConfigProblems(PROGRAM, problems);
}

/** Subcommands: the first argument when it names one; without one the program is the proxy. */
const COMMANDS = {
  webhook: 'the Kubernetes admission webhook that injects the sidecar into annotated pods',
  healthcheck: "exit 0 when this container's sidecar answers GET /healthz with 200, else 1 (the image's HEALTHCHECK)",
} as const;

const COMMANDS_HELP = [
  '',
  'Commands (the first argument; each has its own --help; none runs the proxy):',
  ...Object.entries(COMMANDS).map(([name, meaning]) => `  ${name.padEnd(20)}${meaning}`),
  '',
].join('\n');

export function main(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): void {
  const [first, ...rest] = argv;
  if (first === 'webhook') return runWebhook(rest, env, version());
  if (first === 'healthcheck') return runHealthcheck(rest, env);
  if (first !== undefined && /^[a-z][a-z-]*$/.test(first)) {
    const hint = suggest(first, Object.keys(COMMANDS));
    fail([`command line: ${JSON.stringify(first)} is not a command${hint === undefined ? '' : `; did you mean ${hint}?`} (commands: ${Object.keys(COMMANDS).join(', ')}; none runs the proxy)`]);
  }

  const commandLine = parseCommandLine(argv);
  if (commandLine.action === 'help') {
    process.stdout.write(formatHelp() + COMMANDS_HELP);
    return;
  }
  if (commandLine.action === 'version') {
    process.stdout.write(`${version()}\n`);
    return;
  }

  let loaded: LoadedSettings;
  try {
    loaded = loadSettings({ argv, env });
  } catch (error) {
    if (error instanceof ConfigError) fail(error.problems);
    throw error;
  }
  if (commandLine.action === 'config-test') {
    process.stdout.write(`${JSON.stringify(redactSettings(loaded), null, 2)}\n`);
    return;
  }
  const { config } = loaded;

  const logger = createLogger(config.logLevel);
  const unknown = unknownEnvironmentVariables(env);
  if (unknown.length > 0) logger.warn({ variables: unknown }, 'environment variables that name no setting are ignored; check their spelling');

  // Loaded here, not at the top: the healthcheck runs every few seconds and needs none of it.
  runUntilSignal(PROGRAM, logger, () => import('./main').then(({ startSidecar }) => startSidecar(config, logger)));
}
