/**
 * Gathers the raw settings from their three places, highest first: command-line flags,
 * `IDEMPOTENCY_*` variables, the YAML file (`--config PATH` or `IDEMPOTENCY_CONFIG`); remembers
 * where each came from; and hands them to the schema, which applies the defaults. Everything wrong
 * (unknown flags, an unreadable file, bad values) is thrown together as one ConfigError, so an
 * operator fixes a deployment in one round instead of one error per restart.
 *
 * Nothing else in the sidecar reads argv or the environment.
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isMap, parseDocument } from 'yaml';
import { ConfigError } from '../errors';
import {
  SETTINGS,
  checkSettings,
  envName,
  flagName,
  redactUrl,
  suggest,
  type SettingName,
  type SettingSource,
} from './schema';
import type { Config } from './settings';

export interface LoadInput {
  /** The arguments after the script: `process.argv.slice(2)`. Action flags are ignored here. */
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv | Readonly<Record<string, string | undefined>>;
  /** Reads the YAML file; defaults to fs.readFileSync(path, 'utf8'). Tests pass their own. */
  readonly readFile?: (path: string) => string;
}

export type Action = 'run' | 'help' | 'version' | 'config-test';

export interface CommandLine {
  /** `help` wins over `version`, which wins over `config-test`. */
  readonly action: Action;
  /** Settings given as flags, by YAML name, exactly as typed. */
  readonly settings: Readonly<Partial<Record<SettingName, string>>>;
  /** From `--config PATH`. */
  readonly configPath: string | undefined;
  /** Unknown flags, flags without a value, stray arguments: one line each. */
  readonly problems: readonly string[];
}

const CONFIG_ENV = 'IDEMPOTENCY_CONFIG';
const CONFIG_FLAG = '--config';

const ACTIONS = {
  help: { flag: '--help', short: 'h', meaning: 'print this help and exit' },
  version: { flag: '--version', short: undefined, meaning: 'print the version and exit' },
  'config-test': {
    flag: '--config-test',
    short: undefined,
    meaning: 'validate the configuration, print it with secrets redacted, and exit (0 when valid)',
  },
} as const;

/** Settings a flag can carry, by flag name without the dashes (`admin-port`). */
const FLAG_SETTINGS: ReadonlyMap<string, (typeof SETTINGS)[number]> = new Map(
  SETTINGS.filter((s) => s.flag !== undefined).map((s) => [flagName(s.name).slice(2), s]),
);

const BOOLEAN_WORD = /^(true|false|1|0|yes|no)$/i;

type ParseArgsOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

const PARSE_OPTIONS: ParseArgsOptions = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  'config-test': { type: 'boolean' },
  config: { type: 'string' },
  ...Object.fromEntries([...FLAG_SETTINGS.keys()].map((name) => [name, { type: 'string' as const }])),
};

/**
 * Splits the command line into the action to take and the settings given as flags. Never throws:
 * `--help` must work even next to a typo, so problems are returned for loadConfig to throw.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const { tokens } = parseArgs({
    args: withBooleanValues(argv),
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });

  const settings: Partial<Record<SettingName, string>> = {};
  const actions = new Set<keyof typeof ACTIONS>();
  const problems: string[] = [];
  let configPath: string | undefined;
  // Set after an unknown flag or a flag that swallowed the next flag: the argument that follows
  // was meant as a value, and complaining about it too would only add noise.
  let skipPositional = false;

  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      if (!skipPositional) {
        problems.push(`command line: unexpected argument ${JSON.stringify(token.value)}; settings are flags, e.g. --port 8080`);
      }
      skipPositional = false;
      continue;
    }
    skipPositional = false;
    const { name, rawName, value, inlineValue } = token;
    if (name === 'help' || name === 'version' || name === 'config-test') {
      if (value !== undefined) problems.push(`${rawName}: takes no value`);
      else actions.add(name);
      continue;
    }
    const setting = FLAG_SETTINGS.get(name);
    if (setting === undefined && name !== 'config') {
      const hint = suggest(name, [...FLAG_SETTINGS.keys(), 'config', ...Object.keys(ACTIONS)]);
      problems.push(`${rawName}: is not a flag${hint === undefined ? '' : `; did you mean --${hint}?`} (see --help)`);
      skipPositional = value === undefined;
      continue;
    }
    if (value === undefined || (inlineValue === false && value.startsWith('--'))) {
      problems.push(
        `${rawName}: needs a value, e.g. ${rawName}=VALUE${value === undefined ? '' : ` (it is followed by ${value})`}`,
      );
      skipPositional = value !== undefined;
      continue;
    }
    if (setting === undefined) configPath = value;
    else settings[setting.name] = value;
  }

  const action: Action = actions.has('help')
    ? 'help'
    : actions.has('version')
      ? 'version'
      : actions.has('config-test')
        ? 'config-test'
        : 'run';
  return { action, settings, configPath, problems };
}

/**
 * A boolean setting's flag alone means true (`--require-key`), but it also takes a value
 * (`--require-key=false`, `--require-key false`). parseArgs has no such option type, so the
 * bare forms are rewritten to `--flag=value` before parsing.
 */
function withBooleanValues(argv: readonly string[]): string[] {
  const booleanFlags = new Set(SETTINGS.filter((s) => s.boolean).map((s) => flagName(s.name)));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (!booleanFlags.has(arg)) {
      out.push(arg);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && BOOLEAN_WORD.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(`${arg}=true`);
    }
  }
  return out;
}

/**
 * Builds the deeply frozen Config from flags, environment and the YAML file, or throws one
 * ConfigError with every problem found, each a line that starts with the name to fix.
 */
export function loadConfig(input: LoadInput): Config {
  const commandLine = parseCommandLine(input.argv);
  const problems: string[] = [...commandLine.problems];
  const raw: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const sources: Record<string, SettingSource> = Object.create(null) as Record<string, SettingSource>;

  const file = configFile(commandLine, input.env);
  let fileFailed = false;
  if (file !== undefined) {
    const read = readSettingsFile(file, input.readFile ?? ((path) => readFileSync(path, 'utf8')));
    if ('problems' in read) {
      problems.push(...read.problems);
      fileFailed = true;
    } else {
      for (const [key, value] of Object.entries(read.settings)) {
        // `redisUrl:` with nothing after it reads as null: the operator left it unset.
        if (value === null && SETTINGS.some((s) => s.name === key)) continue;
        raw[key] = value;
        sources[key] = { kind: 'file', file: file.path };
      }
    }
  }

  for (const setting of SETTINGS) {
    const value = setting.env === undefined ? undefined : input.env[setting.env];
    if (value === undefined) continue;
    raw[setting.name] = value;
    sources[setting.name] = { kind: 'env' };
  }

  for (const [name, value] of Object.entries(commandLine.settings)) {
    raw[name] = value;
    sources[name] = { kind: 'flag' };
  }

  const checked = checkSettings(raw, sources);
  if (checked.ok && problems.length === 0) return checked.config;
  if (!checked.ok) {
    for (const problem of checked.problems) {
      // With the file unreadable, "upstream is required" is most likely in that file: saying
      // so would send the operator after the wrong thing.
      if (fileFailed && sources[problem.setting] === undefined) continue;
      problems.push(problem.message);
    }
  }
  throw new ConfigError(problems);
}

interface ConfigFile {
  readonly path: string;
  /** `--config` or `IDEMPOTENCY_CONFIG`, for messages about the file as a whole. */
  readonly namedBy: string;
}

function configFile(commandLine: CommandLine, env: LoadInput['env']): ConfigFile | undefined {
  if (commandLine.configPath !== undefined) return { path: commandLine.configPath, namedBy: CONFIG_FLAG };
  const path = env[CONFIG_ENV];
  return path === undefined ? undefined : { path, namedBy: CONFIG_ENV };
}

/**
 * The file's top-level mapping, or why there is none. An empty file (or one of comments only) is
 * an empty mapping: a fully commented-out example is a valid file.
 */
function readSettingsFile(
  file: ConfigFile,
  readFile: (path: string) => string,
): { readonly settings: Readonly<Record<string, unknown>> } | { readonly problems: readonly string[] } {
  if (file.path === '') {
    return { problems: [`${file.namedBy}: is empty; give the path of a YAML file, or unset it`] };
  }
  let text: string;
  try {
    text = readFile(file.path);
  } catch (error) {
    return { problems: [`${file.namedBy} ${file.path}: cannot be read (${messageOf(error)})`] };
  }

  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    return {
      problems: document.errors.map((error) => {
        // A pretty message carries a code excerpt on the lines after the first; one line each.
        const first = (error.message.split('\n')[0] ?? '').replace(/( at line \d+, column \d+)?:$/, '');
        const at = error.linePos?.[0];
        return `${file.path}${at === undefined ? '' : `:${at.line}:${at.col}`}: is not valid YAML: ${first}`;
      }),
    };
  }
  if (document.contents === null) return { settings: {} };
  if (!isMap(document.contents)) {
    return {
      problems: [`${file.path}: is not a mapping of settings; write one setting per line, e.g. upstream: http://127.0.0.1:3000`],
    };
  }
  try {
    // toJS() throws on alias bombs (more aliases than its maxAliasCount): a bad file, not a crash.
    const settings: unknown = document.toJS();
    return { settings: settings as Record<string, unknown> };
  } catch (error) {
    return { problems: [`${file.path}: is not usable YAML: ${messageOf(error)}`] };
  }
}

/** Not `instanceof Error`: errors from another realm (a vm context, jest) fail that test. */
function messageOf(error: unknown): string {
  const message: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'message') : undefined;
  return typeof message === 'string' ? message : String(error);
}

/** One row of `--help`: a setting, or the `--config` file itself. */
export interface SettingHelp {
  /** The YAML name. */
  readonly name: string;
  readonly env: string | undefined;
  readonly flag: string | undefined;
  readonly default: string;
  readonly meaning: string;
}

/** Every setting with its names, default and meaning: the source of `--help`. */
export function describeSettings(): readonly SettingHelp[] {
  return [
    {
      name: '(file)',
      env: CONFIG_ENV,
      flag: CONFIG_FLAG,
      default: 'unset',
      meaning: 'YAML file of the settings below, by their names in camelCase (adminPort, redisUrl, ...), plus routes',
    },
    ...SETTINGS.map(({ name, env, flag, default: fallback, meaning }) => ({ name, env, flag, default: fallback, meaning })),
  ];
}

/** The text `--help` prints, generated from describeSettings() so it cannot drift. */
export function formatHelp(): string {
  const lines = [
    'Usage: idempotency-sidecar [flags]',
    '',
    'A reverse proxy that makes retried HTTP requests with an Idempotency-Key execute exactly once.',
    'Each setting is read from its flag, else its variable, else the YAML file, else its default.',
    'Durations take ms, s, m, h or d (250ms, 2s, 24h); lists are comma-separated.',
    '',
    'Actions:',
    ...Object.values(ACTIONS).map((a) => `  ${(a.short === undefined ? '' : `-${a.short}, `) + a.flag}`.padEnd(22) + a.meaning),
    '',
    'Settings:',
  ];
  const booleans = new Set(SETTINGS.filter((s) => s.boolean).map((s) => s.name));
  for (const row of describeSettings()) {
    const value = booleans.has(row.name as SettingName) ? '[=true|false]' : ' VALUE';
    const names =
      row.flag === undefined || row.env === undefined
        ? `${row.name}: (YAML file only)`
        : `${row.flag}${value}, ${row.env}`;
    lines.push(`  ${names}  (default: ${row.default})`, `      ${row.meaning}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The effective config as plain JSON for `--config-test`: secrets replaced by REDACTED (the admin
 * token, passwords inside Redis URLs), the upstream as its origin.
 */
export function redactConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    upstream: config.upstream.origin,
    redisUrl: config.redisUrl === undefined ? undefined : redactUrl(config.redisUrl),
    redlockUrls: config.redlockUrls?.map(redactUrl),
    redisPassword: config.redisPassword === undefined ? undefined : 'REDACTED',
    encryptionKeys: config.encryptionKeys === undefined ? undefined : 'REDACTED',
    adminToken: config.adminToken === undefined ? undefined : 'REDACTED',
  };
}

/**
 * `IDEMPOTENCY_*` variables that name no setting: most likely typos (`IDEMPOTENCY_REQUIRE_KEYS`)
 * that would otherwise be ignored without a word. Not an error, since the contract lets more
 * variables exist; main logs them as a warning.
 */
export function unknownEnvironmentVariables(env: LoadInput['env']): string[] {
  const known = new Set<string>([CONFIG_ENV, ...SETTINGS.flatMap((s) => (s.env === undefined ? [] : [s.env]))]);
  return Object.keys(env)
    .filter((name) => name.startsWith('IDEMPOTENCY_') && !known.has(name))
    .sort();
}

/** Re-exported so callers build names the same way the messages do. */
export { envName, flagName };
