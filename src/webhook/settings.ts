/**
 * The webhook's own settings, from flags (highest) and `IDEMPOTENCY_WEBHOOK_*` variables, with
 * defaults; validated once, like the proxy's: every problem in one ConfigError, each line starting
 * with the flag or variable to fix. The files the settings name (TLS pair, sidecar template) are
 * read and checked here too, so a bad Secret or ConfigMap stops the webhook at start with exit 2
 * instead of failing the first pod.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { DURATION_HINT, parseDuration } from '../config/duration';
import { flagName, suggest } from '../config/schema';
import type { LogLevel } from '../config/settings';
import { ConfigError } from '../errors';
import { parseSidecarTemplate, type SidecarTemplate } from './template';
import { readKeyPairSync } from '../tls/key-pair';

export interface WebhookConfig {
  readonly port: number;
  readonly host: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly tlsReloadIntervalMs: number;
  /** The template file's path, and what it holds. */
  readonly sidecarTemplate: string;
  readonly template: SidecarTemplate;
  readonly logLevel: LogLevel;
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every webhook setting: its name (flags and variables derive from it), default and meaning. */
export const WEBHOOK_SETTINGS = [
  { name: 'port', default: '8443', meaning: 'port of the HTTPS listener (POST /mutate, GET /healthz)' },
  { name: 'host', default: '0.0.0.0', meaning: 'address of the HTTPS listener' },
  { name: 'tlsCert', default: 'required', meaning: 'PEM file of the serving certificate (with its chain); re-read when it changes' },
  { name: 'tlsKey', default: 'required', meaning: 'PEM file of the private key of tlsCert; re-read when it changes' },
  {
    name: 'tlsReloadInterval',
    default: '10s',
    meaning: 'how often the certificate and key files are re-read; a new pair that does not load is refused and the old one kept',
  },
  {
    name: 'sidecarTemplate',
    default: 'required',
    meaning: 'YAML or JSON file: the Kubernetes Container to inject, plus nativeSidecar: true|false (see config/webhook-sidecar-template.yaml)',
  },
  { name: 'logLevel', default: 'info', meaning: `least severe log level written: ${LOG_LEVELS.join(', ')}` },
] as const;

export type WebhookSettingName = (typeof WEBHOOK_SETTINGS)[number]['name'];

/** `tlsCert` -> `IDEMPOTENCY_WEBHOOK_TLS_CERT`. */
export function webhookEnvName(setting: string): string {
  return `IDEMPOTENCY_WEBHOOK_${setting.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export type WebhookAction = 'run' | 'help' | 'version' | 'config-test';

export interface WebhookCommandLine {
  readonly action: WebhookAction;
  readonly settings: Readonly<Partial<Record<WebhookSettingName, string>>>;
  readonly problems: readonly string[];
}

const FLAGS: ReadonlyMap<string, WebhookSettingName> = new Map(WEBHOOK_SETTINGS.map((s) => [flagName(s.name).slice(2), s.name]));
const ACTION_FLAGS = ['help', 'version', 'config-test'] as const;

/** Never throws, so --help works next to a typo; problems are for loadWebhookConfig to throw. */
export function parseWebhookCommandLine(argv: readonly string[]): WebhookCommandLine {
  const { tokens } = parseArgs({
    args: [...argv],
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
      'config-test': { type: 'boolean' },
      ...Object.fromEntries([...FLAGS.keys()].map((name) => [name, { type: 'string' as const }])),
    },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const settings: Partial<Record<WebhookSettingName, string>> = {};
  const actions = new Set<string>();
  const problems: string[] = [];
  // After an unknown flag the next argument was most likely its value: one complaint is enough.
  let skipPositional = false;
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      if (!skipPositional) problems.push(`command line: unexpected argument ${JSON.stringify(token.value)}; settings are flags, e.g. --port 8443`);
      skipPositional = false;
      continue;
    }
    skipPositional = false;
    const { name, rawName, value, inlineValue } = token;
    if ((ACTION_FLAGS as readonly string[]).includes(name)) {
      if (value !== undefined) problems.push(`${rawName}: takes no value`);
      else actions.add(name);
      continue;
    }
    const setting = FLAGS.get(name);
    if (setting === undefined) {
      const hint = suggest(name, [...FLAGS.keys(), ...ACTION_FLAGS]);
      problems.push(`${rawName}: is not a flag of the webhook${hint === undefined ? '' : `; did you mean --${hint}?`} (see webhook --help)`);
      skipPositional = value === undefined;
      continue;
    }
    if (value === undefined || (inlineValue === false && value.startsWith('--'))) {
      problems.push(`${rawName}: needs a value, e.g. ${rawName}=VALUE`);
      continue;
    }
    settings[setting] = value;
  }
  const action: WebhookAction = actions.has('help') ? 'help' : actions.has('version') ? 'version' : actions.has('config-test') ? 'config-test' : 'run';
  return { action, settings, problems };
}

export interface WebhookLoadInput {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv | Readonly<Record<string, string | undefined>>;
}

/** setTimeout fires at once for anything longer. */
const LONGEST_TIMER_MS = 2_147_483_647;

/** The frozen webhook config, or one ConfigError with every problem. */
export function loadWebhookConfig(input: WebhookLoadInput): WebhookConfig {
  const commandLine = parseWebhookCommandLine(input.argv);
  const problems: string[] = [...commandLine.problems];

  const raw = (name: WebhookSettingName): { value: string; label: string } | undefined => {
    const flag = commandLine.settings[name];
    if (flag !== undefined) return { value: flag, label: flagName(name) };
    const env = input.env[webhookEnvName(name)];
    return env === undefined ? undefined : { value: env, label: webhookEnvName(name) };
  };
  const labelOf = (name: WebhookSettingName): string => raw(name)?.label ?? webhookEnvName(name);

  const port = ((): number => {
    const given = raw('port');
    if (given === undefined) return 8443;
    const text = given.value.trim();
    const n = /^\d+$/.test(text) ? Number(text) : NaN;
    // 0 binds a free port, named in the "listening" log line.
    if (Number.isInteger(n) && n >= 0 && n <= 65_535) return n;
    problems.push(`${given.label}: ${JSON.stringify(given.value)} is not a port; use a whole number from 1 to 65535, or 0 for any free port`);
    return 0;
  })();

  const host = ((): string => {
    const given = raw('host');
    if (given === undefined) return '0.0.0.0';
    const text = given.value.trim();
    if (isIP(text) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(text)) return text;
    problems.push(`${given.label}: ${JSON.stringify(given.value)} is not an address; give a host name or IP address without a port, e.g. 0.0.0.0 or ::`);
    return '';
  })();

  const path = (name: 'tlsCert' | 'tlsKey' | 'sidecarTemplate', what: string): string | undefined => {
    const given = raw(name);
    if (given === undefined || given.value.trim() === '') {
      problems.push(`${given?.label ?? webhookEnvName(name)}: is required: the path of ${what}`);
      return undefined;
    }
    return given.value;
  };
  const tlsCert = path('tlsCert', 'the PEM serving certificate, e.g. /etc/webhook/tls/tls.crt');
  const tlsKey = path('tlsKey', 'its PEM private key, e.g. /etc/webhook/tls/tls.key');
  const sidecarTemplate = path('sidecarTemplate', 'the sidecar template, e.g. /etc/webhook/template/sidecar.yaml');

  const tlsReloadIntervalMs = ((): number => {
    const given = raw('tlsReloadInterval');
    if (given === undefined) return 10_000;
    const ms = parseDuration(given.value.trim());
    if (ms === undefined || ms === 0 || ms > LONGEST_TIMER_MS) {
      problems.push(`${given.label}: ${JSON.stringify(given.value)} is not a duration longer than 0; ${DURATION_HINT}`);
      return 0;
    }
    return ms;
  })();

  const logLevel = ((): LogLevel => {
    const given = raw('logLevel');
    if (given === undefined) return 'info';
    const hit = LOG_LEVELS.find((level) => level === given.value.trim().toLowerCase());
    if (hit !== undefined) return hit;
    problems.push(`${given.label}: ${JSON.stringify(given.value)} is not accepted; use ${LOG_LEVELS.join(', ')}`);
    return 'info';
  })();

  if (tlsCert !== undefined && tlsKey !== undefined) {
    const read = readKeyPairSync({ certPath: tlsCert, keyPath: tlsKey });
    if ('problems' in read) {
      for (const problem of read.problems) {
        const where =
          problem.file === 'cert'
            ? `${labelOf('tlsCert')} ${tlsCert}`
            : problem.file === 'key'
              ? `${labelOf('tlsKey')} ${tlsKey}`
              : `${labelOf('tlsCert')} and ${labelOf('tlsKey')}`;
        problems.push(`${where}: ${problem.message}`);
      }
    }
  }

  let template: SidecarTemplate | undefined;
  if (sidecarTemplate !== undefined) {
    const where = `${labelOf('sidecarTemplate')} ${sidecarTemplate}`;
    let text: string | undefined;
    try {
      text = readFileSync(sidecarTemplate, 'utf8');
    } catch (error) {
      problems.push(`${where}: cannot be read (${error instanceof Error ? error.message : String(error)})`);
    }
    if (text !== undefined) {
      const parsed = parseSidecarTemplate(text, where);
      if ('problems' in parsed) problems.push(...parsed.problems);
      else template = parsed.template;
    }
  }

  if (problems.length > 0 || tlsCert === undefined || tlsKey === undefined || sidecarTemplate === undefined || template === undefined) {
    throw new ConfigError(problems);
  }
  return Object.freeze({ port, host, tlsCert, tlsKey, tlsReloadIntervalMs, sidecarTemplate, template, logLevel });
}

/** `IDEMPOTENCY_WEBHOOK_*` variables that name no webhook setting: probably typos; logged as a warning. */
export function unknownWebhookVariables(env: WebhookLoadInput['env']): string[] {
  const known = new Set<string>(WEBHOOK_SETTINGS.map((s) => webhookEnvName(s.name)));
  return Object.keys(env)
    .filter((name) => name.startsWith('IDEMPOTENCY_WEBHOOK_') && !known.has(name))
    .sort();
}

/** The text `webhook --help` prints. */
export function formatWebhookHelp(): string {
  const lines = [
    'Usage: idempotency-sidecar webhook [flags]',
    '',
    'The Kubernetes mutating admission webhook that injects the sidecar into pods annotated',
    'idempotency-sidecar.io/inject: "true". Serves POST /mutate (AdmissionReview admission.k8s.io/v1)',
    'and GET /healthz over HTTPS. Each setting is read from its flag, else its variable, else its default.',
    '',
    'Actions:',
    '  -h, --help          print this help and exit',
    '  --version           print the version and exit',
    '  --config-test       validate the settings, the TLS pair and the template, print them, and exit (0 when valid)',
    '',
    'Settings:',
  ];
  for (const setting of WEBHOOK_SETTINGS) {
    lines.push(`  ${flagName(setting.name)} VALUE, ${webhookEnvName(setting.name)}  (default: ${setting.default})`, `      ${setting.meaning}`);
  }
  lines.push(
    '',
    'Pod annotations: idempotency-sidecar.io/inject ("true"), upstream-port (required), proxy-port, admin-port,',
    'config-map, native-sidecar; the webhook adds idempotency-sidecar.io/status: injected. See the README.',
  );
  return `${lines.join('\n')}\n`;
}
