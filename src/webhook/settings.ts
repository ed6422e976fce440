/**
 * The webhook's own settings, read by the one reader (config/reader.ts) from its rows in the
 * settings table (config/table.ts): flags (highest), `IDEMPOTENCY_WEBHOOK_*` variables, defaults.
 * Validated in one pass, like the proxy's: every problem in one ConfigError, each line starting
 * with the flag or variable to fix. The files the settings name (TLS pair, sidecar template) are
 * read and checked in the same pass, so a bad Secret or ConfigMap stops the webhook at start with
 * exit 2 instead of failing the first pod.
 */
import { readFileSync } from 'node:fs';
import {
  checkRows,
  describeIssues,
  formatHelp,
  gather,
  messageOf,
  parseCommandLine,
  unknownVariables,
  type CommandLine,
  label,
  type CommandReading,
  type Env,
} from '../config/reader';
import { WEBHOOK, WEBHOOK_SETTINGS, envName, type SettingValues } from '../config/table';
import { ConfigError } from '../errors';
import { parseSidecarTemplate, type SidecarTemplate } from './template';
import { readKeyPairSync } from '../tls/key-pair';

/** The webhook's settings as their rows parse them, and what the template file holds. */
export type WebhookConfig = SettingValues<typeof WEBHOOK_SETTINGS> & {
  readonly template: SidecarTemplate;
};

export { WEBHOOK_SETTINGS };
export type WebhookSettingName = keyof typeof WEBHOOK_SETTINGS;

/** How the webhook reads its settings. */
export const WEBHOOK_READING: CommandReading<typeof WEBHOOK_SETTINGS> = {
  group: WEBHOOK,
  command: 'webhook',
  actions: ['help', 'version', 'config-test'],
  helpFlag: 'webhook --help',
  example: '--port 8443',
};

/** `tlsCert` -> `IDEMPOTENCY_WEBHOOK_TLS_CERT`. */
export function webhookEnvName(setting: string): string {
  return envName(setting, WEBHOOK.envPrefix);
}

export type WebhookCommandLine = CommandLine;

/** Never throws, so --help works next to a typo; problems are for loadWebhookConfig to throw. */
export function parseWebhookCommandLine(argv: readonly string[]): WebhookCommandLine {
  return parseCommandLine(WEBHOOK_READING, argv);
}

export interface WebhookLoadInput {
  readonly argv: readonly string[];
  readonly env: Env;
}

/** The frozen webhook config, or one ConfigError with every problem. */
export function loadWebhookConfig(input: WebhookLoadInput): WebhookConfig {
  const gathered = gather(WEBHOOK_READING, input);
  const rows = checkRows(WEBHOOK_READING, gathered.raw);
  const problems = [...gathered.problems, ...describeIssues(WEBHOOK, rows.issues, gathered.sources)];
  const values = rows.values;
  /** `IDEMPOTENCY_WEBHOOK_TLS_CERT /path`: the setting as it was given, and its file. */
  const where = (setting: WebhookSettingName, file: string): string => `${label(WEBHOOK, [setting], [], gathered.sources)} ${file}`;

  const { tlsCert, tlsKey, sidecarTemplate } = values;
  if (!rows.failed.has('tlsCert') && !rows.failed.has('tlsKey')) {
    const read = readKeyPairSync({ certPath: tlsCert, keyPath: tlsKey });
    if ('problems' in read) {
      for (const problem of read.problems) {
        const at =
          problem.file === 'key'
            ? where('tlsKey', tlsKey)
            : problem.file === 'both'
              ? label(WEBHOOK, ['tlsCert', 'tlsKey'], [], gathered.sources)
              : where('tlsCert', tlsCert);
        problems.push(`${at}: ${problem.message}`);
      }
    }
  }

  let template: SidecarTemplate | undefined;
  if (!rows.failed.has('sidecarTemplate')) {
    const at = where('sidecarTemplate', sidecarTemplate);
    let text: string | undefined;
    try {
      text = readFileSync(sidecarTemplate, 'utf8');
    } catch (error) {
      problems.push(`${at}: cannot be read (${messageOf(error)})`);
    }
    if (text !== undefined) {
      // The template's problems name the file (and the line) themselves.
      const parsed = parseSidecarTemplate(text, at);
      if ('problems' in parsed) problems.push(...parsed.problems);
      else template = parsed.template;
    }
  }

  if (problems.length > 0 || template === undefined) throw new ConfigError(problems);
  return Object.freeze({ ...values, template });
}

/** `IDEMPOTENCY_WEBHOOK_*` variables that name no webhook setting: probably typos; logged as a warning. */
export function unknownWebhookVariables(env: WebhookLoadInput['env']): string[] {
  return unknownVariables(WEBHOOK, env);
}

/** The text `webhook --help` prints, from its rows. */
export function formatWebhookHelp(): string {
  const help = formatHelp(WEBHOOK_READING, [
    'Usage: idempotency-sidecar webhook [flags]',
    '',
    'The Kubernetes mutating admission webhook that injects the sidecar into pods annotated',
    'idempotency-sidecar.io/inject: "true". Serves POST /mutate (AdmissionReview admission.k8s.io/v1)',
    'and GET /healthz over HTTPS. Each setting is read from its flag, else its variable, else its default.',
  ]);
  return [
    help.trimEnd(),
    '',
    'Pod annotations: idempotency-sidecar.io/inject ("true"), upstream-port (required), proxy-port, admin-port,',
    'config-map, native-sidecar; the webhook adds idempotency-sidecar.io/status: injected. See the README.',
    '',
  ].join('\n');
}
