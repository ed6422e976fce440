/**
 * The one reader of settings, for every command (the proxy, the healthcheck, the webhook): the
 * command line, the group's variables and, where the group has one, its YAML file, highest first;
 * where each value came from; and one pass over the rows that the command reads, collecting every
 * problem as a line that starts with the name to fix (`IDEMPOTENCY_TTL`, `--ttl`, `config.yaml:
 * routes[1].ttl`). Nothing else reads argv or the environment.
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isMap, parseDocument } from 'yaml';
import { INVALID, redactUrl, suggest, type Path } from './checks';
import { yamlErrorLines } from './yaml-errors';
import { configKey, envName, flagName, type Command, type Row, type SettingGroup, type SettingValues } from './table';

export type Env = NodeJS.ProcessEnv | Readonly<Record<string, string | undefined>>;
type Rows = Readonly<Record<string, Row<unknown>>>;

export interface ReadInput {
  /** The arguments after the command: `process.argv.slice(2)` for the proxy. */
  readonly argv: readonly string[];
  readonly env: Env;
  /** Reads the YAML file; defaults to fs.readFileSync(path, 'utf8'). Tests pass their own. */
  readonly readFile?: (path: string) => string;
}

export type Action = 'run' | 'help' | 'version' | 'config-test';

/** The flags that are actions, not settings. */
export const ACTIONS = {
  help: { flag: '--help', short: 'h', meaning: 'print this help and exit' },
  version: { flag: '--version', short: undefined, meaning: 'print the version and exit' },
  'config-test': {
    flag: '--config-test',
    short: undefined,
    meaning: 'validate the configuration, print it with secrets redacted, and exit (0 when valid)',
  },
} as const;

type ActionName = keyof typeof ACTIONS;

/** How one command reads its group. */
export interface CommandReading<G extends Rows> {
  readonly group: SettingGroup<G>;
  readonly command: Command;
  /** The action flags it takes; `help` wins over `version`, which wins over `config-test`. */
  readonly actions: readonly ActionName[];
  /** How messages send the operator to the help: `--help`, `webhook --help`. */
  readonly helpFlag: string;
  /** A flag with a value, for messages: `--port 8080`. */
  readonly example: string;
}

export interface CommandLine {
  readonly action: Action;
  /** Settings given as flags, by YAML name, exactly as typed. */
  readonly settings: Readonly<Record<string, string>>;
  /** From the group's file flag (`--config PATH`). */
  readonly configPath: string | undefined;
  /** Unknown flags, flags without a value, stray arguments: one line each. */
  readonly problems: readonly string[];
}

/** Where a raw value came from; decides how a problem names the setting. */
export type SettingSource = { readonly kind: 'flag' } | { readonly kind: 'env' } | { readonly kind: 'file'; readonly file: string };
export type SettingSources = Readonly<Partial<Record<string, SettingSource>>>;

/** A problem with a setting, before it is worded for where the value came from. */
export interface SettingIssue {
  /** The setting's YAML name, or an unknown key. */
  readonly setting: string;
  /** Below the setting: `[1, 'ttl']` for routes[1].ttl. */
  readonly path?: Path;
  readonly message: string;
  /** Other settings the problem is about, named after the first ("A and B: are both set"). */
  readonly also?: readonly string[];
  /** The whole line is `message` (an unknown key names itself). */
  readonly verbatim?: boolean;
}

/** The rows the command reads, by YAML name. */
export function rowsOf<G extends Rows>(reading: CommandReading<G>): [string, Row<unknown>][] {
  return Object.entries(reading.group.rows).filter(([, setting]) => setting.commands.includes(reading.command));
}

function flagRows<G extends Rows>(reading: CommandReading<G>): Map<string, [string, Row<unknown>]> {
  return new Map(rowsOf(reading).filter(([, s]) => !s.fileOnly).map((entry) => [flagName(entry[0]).slice(2), entry]));
}

const BOOLEAN_WORD = /^(true|false|1|0|yes|no)$/i;

/**
 * Splits the command line into the action to take and the settings given as flags. Never throws:
 * `--help` must work even next to a typo, so problems are returned for the caller to throw.
 */
export function parseCommandLine<G extends Rows>(reading: CommandReading<G>, argv: readonly string[]): CommandLine {
  const flags = flagRows(reading);
  const fileFlag = reading.group.file?.flag.slice(2);
  const options: NonNullable<Parameters<typeof parseArgs>[0]>['options'] = {
    ...Object.fromEntries(
      reading.actions.map((name) => [name, { type: 'boolean' as const, ...(ACTIONS[name].short === undefined ? {} : { short: ACTIONS[name].short }) }]),
    ),
    ...(fileFlag === undefined ? {} : { [fileFlag]: { type: 'string' as const } }),
    ...Object.fromEntries([...flags.keys()].map((name) => [name, { type: 'string' as const }])),
  };
  const { tokens } = parseArgs({ args: withBooleanValues(flags, argv), options, strict: false, allowPositionals: true, tokens: true });

  const settings: Record<string, string> = {};
  const actions = new Set<string>();
  const problems: string[] = [];
  let configPath: string | undefined;
  // Set after an unknown flag or a flag that swallowed the next flag: the argument that follows
  // was meant as a value, and complaining about it too would only add noise.
  let skipPositional = false;
  const of = reading.command === 'proxy' ? '' : ` of the ${reading.command}`;

  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      if (!skipPositional) {
        problems.push(`command line: unexpected argument ${JSON.stringify(token.value)}; settings are flags, e.g. ${reading.example}`);
      }
      skipPositional = false;
      continue;
    }
    skipPositional = false;
    const { name, rawName, value, inlineValue } = token;
    if ((reading.actions as readonly string[]).includes(name)) {
      if (value !== undefined) problems.push(`${rawName}: takes no value`);
      else actions.add(name);
      continue;
    }
    const setting = flags.get(name);
    if (setting === undefined && name !== fileFlag) {
      const hint = suggest(name, [...flags.keys(), ...(fileFlag === undefined ? [] : [fileFlag]), ...reading.actions]);
      problems.push(`${rawName}: is not a flag${of}${hint === undefined ? '' : `; did you mean --${hint}?`} (see ${reading.helpFlag})`);
      skipPositional = value === undefined;
      continue;
    }
    if (value === undefined || (inlineValue === false && value.startsWith('--'))) {
      problems.push(`${rawName}: needs a value, e.g. ${rawName}=VALUE${value === undefined ? '' : ` (it is followed by ${value})`}`);
      skipPositional = value !== undefined;
      continue;
    }
    if (setting === undefined) configPath = value;
    else settings[setting[0]] = value;
  }

  const action: Action = actions.has('help') ? 'help' : actions.has('version') ? 'version' : actions.has('config-test') ? 'config-test' : 'run';
  return { action, settings, configPath, problems };
}

/**
 * A boolean setting's flag alone means true (`--require-key`), but it also takes a value
 * (`--require-key=false`, `--require-key false`). parseArgs has no such option type, so the
 * bare forms are rewritten to `--flag=value` before parsing.
 */
function withBooleanValues(flags: ReadonlyMap<string, [string, Row<unknown>]>, argv: readonly string[]): string[] {
  const booleanFlags = new Set([...flags].filter(([, [, s]]) => s.flagIsBoolean).map(([flag]) => `--${flag}`));
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

export interface Gathered {
  readonly commandLine: CommandLine;
  /** Raw values by YAML name, from the highest place that has one. */
  readonly raw: Readonly<Record<string, unknown>>;
  readonly sources: SettingSources;
  /** Lines about the command line and the file as a whole. */
  readonly problems: readonly string[];
  /** The file was named but could not be read: problems about settings it may hold are moot. */
  readonly fileFailed: boolean;
}

/** The raw values from their places, highest first: flags, variables, the YAML file. */
export function gather<G extends Rows>(reading: CommandReading<G>, input: ReadInput): Gathered {
  const commandLine = parseCommandLine(reading, input.argv);
  const problems: string[] = [...commandLine.problems];
  const raw: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const sources: Record<string, SettingSource> = Object.create(null) as Record<string, SettingSource>;
  const read = new Set(rowsOf(reading).map(([name]) => name));
  const rows: Rows = reading.group.rows;

  let fileFailed = false;
  const file = configFile(reading, commandLine, input.env);
  if (file !== undefined) {
    const settings = readSettingsFile(file, input.readFile ?? ((path) => readFileSync(path, 'utf8')));
    if ('problems' in settings) {
      problems.push(...settings.problems);
      fileFailed = true;
    } else {
      for (const [key, value] of Object.entries(settings.settings)) {
        const known = Object.hasOwn(rows, key);
        // `redisUrl:` with nothing after it reads as null: the operator left it unset.
        if (known && value === null) continue;
        // The file is the proxy's: another command skips the settings it does not read.
        if (known && !read.has(key)) continue;
        raw[key] = value;
        sources[key] = { kind: 'file', file: file.path };
      }
    }
  }

  for (const [name, setting] of rowsOf(reading)) {
    if (setting.fileOnly) continue;
    const value = input.env[envName(name, reading.group.envPrefix)];
    if (value === undefined) continue;
    raw[name] = value;
    sources[name] = { kind: 'env' };
  }

  for (const [name, value] of Object.entries(commandLine.settings)) {
    raw[name] = value;
    sources[name] = { kind: 'flag' };
  }
  return { commandLine, raw, sources, problems, fileFailed };
}

interface ConfigFile {
  readonly path: string;
  /** `--config` or `IDEMPOTENCY_CONFIG`, for messages about the file as a whole. */
  readonly namedBy: string;
}

function configFile<G extends Rows>(reading: CommandReading<G>, commandLine: CommandLine, env: Env): ConfigFile | undefined {
  const file = reading.group.file;
  if (file === undefined) return undefined;
  if (commandLine.configPath !== undefined) return { path: commandLine.configPath, namedBy: file.flag };
  const path = env[file.env];
  return path === undefined ? undefined : { path, namedBy: file.env };
}

/**
 * The file's top-level mapping, or why there is none. An empty file (or one of comments only) is
 * an empty mapping: a fully commented-out example is a valid file.
 */
function readSettingsFile(
  file: ConfigFile,
  readFile: (path: string) => string,
): { readonly settings: Readonly<Record<string, unknown>> } | { readonly problems: readonly string[] } {
  if (file.path === '') return { problems: [`${file.namedBy}: is empty; give the path of a YAML file, or unset it`] };
  let text: string;
  try {
    text = readFile(file.path);
  } catch (error) {
    return { problems: [`${file.namedBy} ${file.path}: cannot be read (${messageOf(error)})`] };
  }
  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) return { problems: yamlErrorLines(document, file.path, 'YAML') };
  if (document.contents === null) return { settings: {} };
  if (!isMap(document.contents)) {
    return { problems: [`${file.path}: is not a mapping of settings; write one setting per line, e.g. upstream: http://127.0.0.1:3000`] };
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
export function messageOf(error: unknown): string {
  const message: unknown = typeof error === 'object' && error !== null ? Reflect.get(error, 'message') : undefined;
  return typeof message === 'string' ? message : String(error);
}

/**
 * Every row the command reads, checked: its value parsed, or its default, or the problem. Keys
 * that name no row are problems too. The values are keyed by their Config names.
 */
export function checkRows<G extends Rows>(
  reading: CommandReading<G>,
  raw: Readonly<Record<string, unknown>>,
): { readonly values: SettingValues<G>; readonly issues: readonly SettingIssue[]; readonly failed: ReadonlySet<string> } {
  const values: Record<string, unknown> = {};
  const issues: SettingIssue[] = [];
  const failed = new Set<string>();
  const rows: Rows = reading.group.rows;
  for (const [name, setting] of rowsOf(reading)) {
    const value = raw[name];
    const report = (message: string, path?: Path): typeof INVALID => {
      failed.add(name);
      issues.push({ setting: name, ...(path === undefined ? {} : { path }), message });
      return INVALID;
    };
    let parsed: unknown;
    if (value === undefined) {
      const absent = setting.absent;
      if (absent === 'optional') continue;
      parsed = 'default' in absent ? absent.default : report(`is required: ${absent.required}`);
    } else {
      parsed = setting.check(value, report);
    }
    if (parsed !== INVALID && !failed.has(name)) values[configKey(name, setting)] = parsed;
  }
  for (const key of Object.keys(raw)) {
    if (Object.hasOwn(rows, key)) continue;
    const hint = suggest(key, Object.keys(rows));
    issues.push({ setting: key, message: `unknown setting ${JSON.stringify(key)}${hint === undefined ? '' : `; did you mean ${hint}?`}`, verbatim: true });
  }
  // The one place the rows' values meet their derived type: each was produced by its row's check.
  return { values: values as SettingValues<G>, issues, failed };
}

/** The issues as lines, each starting with the setting as the operator set it. */
export function describeIssues<G extends Rows>(group: SettingGroup<G>, issues: readonly SettingIssue[], sources: SettingSources): string[] {
  return issues.map((issue) => {
    if (issue.verbatim === true) {
      const source = sources[issue.setting];
      return `${source?.kind === 'file' ? source.file : 'config file'}: ${issue.message}`;
    }
    return `${label(group, [issue.setting, ...(issue.also ?? [])], issue.path ?? [], sources)}: ${issue.message}`;
  });
}

/** `IDEMPOTENCY_TTL`, `--ttl`, `config.yaml: routes[1].ttl`; several settings joined with "and". */
export function label<G extends Rows>(group: SettingGroup<G>, settings: readonly string[], path: Path, sources: SettingSources): string {
  const names = settings.map((setting, i) => {
    const source = sources[setting];
    if (source?.kind === 'flag') return { file: undefined, name: flagName(setting) };
    if (source?.kind === 'file') return { file: source.file, name: i === 0 ? yamlPath([setting, ...path]) : setting };
    return { file: undefined, name: envName(setting, group.envPrefix) };
  });
  const files = new Set(names.map((n) => n.file));
  const [only] = files;
  if (files.size === 1 && only !== undefined) return `${only}: ${names.map((n) => n.name).join(' and ')}`;
  return names.map((n) => (n.file === undefined ? n.name : `${n.file}: ${n.name}`)).join(' and ');
}

/** `['routes', 1, 'ttl']` -> `routes[1].ttl`. */
function yamlPath(path: Path): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

/** One row of `--help`. */
export interface SettingHelp {
  /** The YAML name, or `(file)` for the file setting itself. */
  readonly name: string;
  readonly env: string | undefined;
  readonly flag: string | undefined;
  readonly boolean: boolean;
  readonly default: string;
  readonly meaning: string;
}

/** The rows of `--help`: the file setting (where the group has one), then every row the command reads. */
export function describeSettings<G extends Rows>(reading: CommandReading<G>): readonly SettingHelp[] {
  const file = reading.group.file;
  return [
    ...(file === undefined
      ? []
      : [
          {
            name: '(file)',
            env: file.env,
            flag: file.flag,
            boolean: false,
            default: 'unset',
            meaning: 'YAML file of the settings below, by their names in camelCase (adminPort, redisUrl, ...), plus routes',
          },
        ]),
    ...rowsOf(reading).map(([name, setting]) => ({
      name,
      env: setting.fileOnly ? undefined : envName(name, reading.group.envPrefix),
      flag: setting.fileOnly ? undefined : flagName(name),
      boolean: setting.flagIsBoolean,
      default: setting.shownDefault,
      meaning: setting.help,
    })),
  ];
}

/** The text `--help` prints, from the rows so it cannot drift: a preamble, the actions, the settings. */
export function formatHelp<G extends Rows>(reading: CommandReading<G>, preamble: readonly string[]): string {
  const lines = [
    ...preamble,
    '',
    'Actions:',
    ...reading.actions.map((name) => {
      const a = ACTIONS[name];
      return `  ${(a.short === undefined ? '' : `-${a.short}, `) + a.flag}`.padEnd(22) + a.meaning;
    }),
    '',
    'Settings:',
  ];
  for (const row of describeSettings(reading)) {
    const value = row.boolean ? '[=true|false]' : ' VALUE';
    const names = row.flag === undefined || row.env === undefined ? `${row.name}: (YAML file only)` : `${row.flag}${value}, ${row.env}`;
    lines.push(`  ${names}  (default: ${row.default})`, `      ${row.meaning}`);
  }
  return `${lines.join('\n')}\n`;
}

/** A URL setting's value (a string) with its password blanked. */
function redactShown(value: unknown): string {
  return typeof value === 'string' ? redactUrl(value) : 'REDACTED';
}

/**
 * The values as --config-test prints them, by Config name: every secret row REDACTED, URLs with
 * their passwords blanked, a URL value as its origin. What is secret is the rows' to say.
 */
export function redactValues<G extends Rows>(reading: CommandReading<G>, values: SettingValues<G>): Record<string, unknown> {
  const byKey: Readonly<Record<string, unknown>> = values;
  const out: Record<string, unknown> = {};
  for (const [name, setting] of rowsOf(reading)) {
    const key = configKey(name, setting);
    const value = byKey[key];
    if (value === undefined) continue;
    if (setting.secret === 'value') out[key] = 'REDACTED';
    else if (setting.secret === 'url-password') out[key] = Array.isArray(value) ? value.map((v) => redactShown(v)) : redactShown(value);
    else out[key] = value instanceof URL ? value.origin : value;
  }
  return out;
}

/**
 * Variables with the group's prefix that name no setting: most likely typos
 * (`IDEMPOTENCY_REQUIRE_KEYS`) that would otherwise be ignored without a word. Not an error,
 * since more variables may exist; the command logs them as a warning.
 */
export function unknownVariables<G extends Rows>(group: SettingGroup<G>, env: Env): string[] {
  const known = new Set<string>([
    ...(group.file === undefined ? [] : [group.file.env]),
    ...Object.entries(group.rows).flatMap(([name, s]) => (s.fileOnly ? [] : [envName(name, group.envPrefix)])),
  ]);
  return Object.keys(env)
    .filter((name) => name.startsWith(group.envPrefix) && !known.has(name))
    .sort();
}
