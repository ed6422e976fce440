/**
 * The proxy's configuration: the one reader (reader.ts) over the sidecar's settings, highest
 * first command-line flags, `IDEMPOTENCY_*` variables, the YAML file (`--config PATH` or
 * `IDEMPOTENCY_CONFIG`); then the one pass of validation (schema.ts). Everything wrong (unknown
 * flags, an unreadable file, bad values, files that do not hold what their settings say) is thrown
 * together as one ConfigError, so an operator fixes a deployment in one round instead of one error
 * per restart.
 */

import { ConfigError } from '../errors';
import {
  describeSettings as describeRows,
  formatHelp as formatRows,
  gather,
  parseCommandLine as parseRows,
  redactValues,
  unknownVariables,
  type CommandLine,
  type Env,
  type ReadInput,
  type SettingHelp,
} from './reader';
import { checkSettings, PROXY_READING } from './schema';
import type { Config, SidecarValues } from './settings';
import { SIDECAR } from './table';

export type LoadInput = ReadInput;
export type { Action, CommandLine, SettingHelp } from './reader';

/** Splits the command line into the action and the settings given as flags; never throws. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  return parseRows(PROXY_READING, argv);
}

export interface LoadedSettings {
  readonly config: Config;
  /** Every setting as its row parsed it, for --config-test. */
  readonly values: SidecarValues;
}

/**
 * Builds the deeply frozen Config from flags, environment and the YAML file, with the files the
 * settings name read and checked, or throws one ConfigError with every problem found, each a line
 * that starts with the name to fix.
 */
export function loadSettings(input: LoadInput): LoadedSettings {
  const gathered = gather(PROXY_READING, input);
  const problems: string[] = [...gathered.problems];
  const checked = checkSettings(gathered.raw, gathered.sources);
  if (checked.ok && problems.length === 0) return { config: checked.config, values: checked.values };
  if (!checked.ok) {
    for (const problem of checked.problems) {
      // With the file unreadable, "upstream is required" is most likely in that file: saying
      // so would send the operator after the wrong thing.
      if (gathered.fileFailed && gathered.sources[problem.setting] === undefined) continue;
      problems.push(problem.message);
    }
  }
  throw new ConfigError(problems);
}

export function loadConfig(input: LoadInput): Config {
  return loadSettings(input).config;
}

/** Every setting with its names, default and meaning: the source of `--help`. */
export function describeSettings(): readonly SettingHelp[] {
  return describeRows(PROXY_READING);
}

/** The text `--help` prints, generated from the rows so it cannot drift. */
export function formatHelp(): string {
  return formatRows(PROXY_READING, [
    'Usage: idempotency-sidecar [flags]',
    '',
    'A reverse proxy that makes retried HTTP requests with an Idempotency-Key execute exactly once.',
    'Each setting is read from its flag, else its variable, else the YAML file, else its default.',
    'Durations take ms, s, m, h or d (250ms, 2s, 24h); lists are comma-separated.',
  ]);
}

/**
 * The effective settings as plain JSON for `--config-test`: every secret row REDACTED (the admin
 * token, the Redis password, the encryption keys), passwords inside Redis URLs blanked, the
 * upstream as its origin; then which store that makes.
 */
export function redactSettings(loaded: LoadedSettings): Record<string, unknown> {
  return { ...redactValues(PROXY_READING, loaded.values), store: loaded.config.store.kind };
}

/**
 * `IDEMPOTENCY_*` variables that name no setting: most likely typos (`IDEMPOTENCY_REQUIRE_KEYS`)
 * that would otherwise be ignored without a word. Not an error, since the contract lets more
 * variables exist; the proxy logs them as a warning.
 */
export function unknownEnvironmentVariables(env: Env): string[] {
  return unknownVariables(SIDECAR, env);
}
