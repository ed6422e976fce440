/**
 * `idempotency-sidecar webhook`: the admission webhook as a program. Exit codes as the proxy's:
 * 0 after a clean stop (SIGTERM, SIGINT) or a successful --config-test; 2 for a configuration
 * problem, one line per problem naming the flag or variable; 1 for anything unforeseen.
 *
 * Under `node` as PID 1 (the container image's entrypoint) a signal without a handler is ignored,
 * so the handlers below are what lets the pod stop in time.
 */
import { exitWithConfigProblems, runUntilSignal } from '../process-lifecycle';
import { redactUrl } from '../config/checks';
import { ConfigError } from '../errors';
import { createLogger } from '../observability/logger';
import { startWebhook } from './server';
import { formatWebhookHelp, loadWebhookConfig, parseWebhookCommandLine, unknownWebhookVariables, type WebhookConfig } from './settings';

const PROGRAM = 'idempotency-sidecar webhook';

function fail(problems: readonly string[]): never {
  return exitWithConfigProblems(PROGRAM, problems);
}

const SECRET_NAME = /TOKEN|PASSWORD|SECRET|CREDENTIAL/i;

/** The config as --config-test prints it: a template's literal env values redacted when they look secret. */
export function redactWebhookConfig(config: WebhookConfig): Record<string, unknown> {
  const container = { ...config.template.container };
  if (Array.isArray(container['env'])) {
    container['env'] = (container['env'] as Record<string, unknown>[]).map((entry) => {
      const value = entry['value'];
      if (typeof value !== 'string') return entry;
      const name = typeof entry['name'] === 'string' ? entry['name'] : '';
      return { ...entry, value: SECRET_NAME.test(name) ? 'REDACTED' : redactUrl(value) };
    });
  }
  return { ...config, template: { ...config.template, container } };
}

export function runWebhook(argv: readonly string[], env: NodeJS.ProcessEnv, version: string): void {
  const commandLine = parseWebhookCommandLine(argv);
  if (commandLine.action === 'help') {
    process.stdout.write(formatWebhookHelp());
    return;
  }
  if (commandLine.action === 'version') {
    process.stdout.write(`${version}\n`);
    return;
  }
  let config: WebhookConfig;
  try {
    config = loadWebhookConfig({ argv, env });
  } catch (error) {
    if (error instanceof ConfigError) fail(error.problems);
    throw error;
  }
  if (commandLine.action === 'config-test') {
    process.stdout.write(`${JSON.stringify(redactWebhookConfig(config), null, 2)}\n`);
    return;
  }

  const logger = createLogger(config.logLevel).child({ component: 'webhook' });
  const unknown = unknownWebhookVariables(env);
  if (unknown.length > 0) logger.warn({ variables: unknown }, 'environment variables that name no webhook setting are ignored; check their spelling');

  runUntilSignal(PROGRAM, logger, () => startWebhook(config, logger));
}
