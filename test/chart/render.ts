/**
 * Renders a Helm chart for the chart tests: with `helm template` where helm is on PATH, else with
 * tools/chart-render, a small Go stand-in built here on first use from Debian's golang-go and
 * golang-github-masterminds-sprig-dev (which .ci/run installs when helm is absent) and cached in
 * node_modules/.cache/chart-render under a hash of its source and the Go version.
 *
 * helm checks values.schema.json itself; with the stand-in the values it coalesced
 * (`--show-values`) are checked here with ajv, the chart's and each subchart's against its own
 * schema, so a render fails on bad values either way. CHART_RENDERER=builtin uses the stand-in
 * even where helm is installed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import { parseDocument, stringify } from 'yaml';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CHART_DIR = path.join(ROOT, 'helm', 'idempotency-sidecar');
const RENDERER_DIR = path.join(ROOT, 'tools', 'chart-render');
const CACHE_DIR = path.join(ROOT, 'node_modules', '.cache', 'chart-render');
/** Where Debian's golang-github-masterminds-sprig-dev puts sprig (GOPATH layout). */
export const DEBIAN_GOPATH = '/usr/share/gocode';
const SPRIG_DIR = path.join(DEBIAN_GOPATH, 'src', 'github.com', 'Masterminds', 'sprig');

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export interface RenderedObject {
  /** The template it came from, as helm's `# Source:` comment names it. */
  readonly source: string;
  readonly object: KubeObject;
}

export interface RenderOptions {
  /** Written to a values file and passed with -f. */
  readonly values?: Record<string, unknown>;
  /** --set expressions, after the values file. */
  readonly set?: readonly string[];
  readonly releaseName?: string;
  readonly namespace?: string;
  /** --api-versions: what .Capabilities.APIVersions.Has reports besides the built-in groups. */
  readonly apiVersions?: readonly string[];
  /** Default: the idempotency-sidecar chart. */
  readonly chartDir?: string;
}

/** A render that failed: helm's (or the stand-in's) message, or the values' schema problems. */
export class RenderError extends Error {
  override readonly name = 'RenderError';
}

export type Renderer = { readonly kind: 'helm' } | { readonly kind: 'chart-render'; readonly binary: string };

let renderer: Renderer | undefined;

function onPath(command: string, args: readonly string[]): boolean {
  const result = spawnSync(command, args, { stdio: 'ignore' });
  return result.error === undefined && result.status === 0;
}

/** helm if it is on PATH (and not overridden), else the stand-in, built now if not cached. */
export function chartRenderer(): Renderer {
  if (renderer !== undefined) return renderer;
  if (process.env['CHART_RENDERER'] !== 'builtin' && onPath('helm', ['version', '--short'])) {
    renderer = { kind: 'helm' };
  } else {
    renderer = { kind: 'chart-render', binary: buildChartRender() };
  }
  return renderer;
}

/** Builds tools/chart-render in GOPATH mode against Debian's Go sources; returns the binary's path. */
export function buildChartRender(): string {
  if (!onPath('go', ['version']) || !fs.existsSync(SPRIG_DIR)) {
    throw new Error(
      'the chart tests need helm on PATH, or Go and sprig to build tools/chart-render: ' +
        'apt-get install golang-go golang-github-masterminds-sprig-dev (.ci/run does this when helm is absent)',
    );
  }
  const goVersion = execFileSync('go', ['version'], { encoding: 'utf8' });
  const source = fs.readFileSync(path.join(RENDERER_DIR, 'main.go'));
  const hash = createHash('sha256').update(goVersion).update(source).digest('hex').slice(0, 16);
  const binary = path.join(CACHE_DIR, `chart-render-${hash}`);
  if (fs.existsSync(binary)) return binary;

  fs.mkdirSync(CACHE_DIR, { recursive: true });
  const partial = `${binary}.${process.pid}.tmp`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'] ?? os.tmpdir(),
    GO111MODULE: 'off',
    GOPATH: `${DEBIAN_GOPATH}:${path.join(CACHE_DIR, 'gopath')}`,
    GOCACHE: path.join(CACHE_DIR, 'go-build'),
    GOFLAGS: '',
    GOENV: 'off',
    CGO_ENABLED: '0',
  };
  const result = spawnSync('go', ['build', '-o', partial, '.'], { cwd: RENDERER_DIR, env, encoding: 'utf8' });
  if (result.status !== 0) {
    fs.rmSync(partial, { force: true });
    throw new Error(`building tools/chart-render failed:\n${result.stderr}${result.stdout}`);
  }
  // A rename is atomic: a concurrent worker sees the whole binary or none.
  fs.renameSync(partial, binary);
  return binary;
}

interface Run {
  readonly stdout: string;
}

let scratchDir: string | undefined;
let scratchFiles = 0;

/**
 * Removes the scratch directory. Test files call it in afterAll: jest ends its workers without
 * the 'exit' event, so the hook below alone would leave the directory behind.
 */
export function removeScratch(): void {
  if (scratchDir === undefined) return;
  fs.rmSync(scratchDir, { recursive: true, force: true });
  scratchDir = undefined;
}

/** A directory for values files and chart copies, removed when the process exits. */
function scratch(): string {
  if (scratchDir === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chart-test-'));
    scratchDir = dir;
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return scratchDir;
}

function writeValuesFile(values: Record<string, unknown> | undefined): string[] {
  if (values === undefined) return [];
  const file = path.join(scratch(), `values-${++scratchFiles}.yaml`);
  fs.writeFileSync(file, stringify(values));
  return ['-f', file];
}

function commonArgs(options: RenderOptions): string[] {
  return [
    '--namespace',
    options.namespace ?? 'payments',
    ...writeValuesFile(options.values),
    ...(options.set ?? []).flatMap((expression) => ['--set', expression]),
    ...(options.apiVersions ?? []).flatMap((version) => ['--api-versions', version]),
  ];
}

function exec(command: string, args: readonly string[]): Run {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error !== undefined) throw result.error;
  if (result.status !== 0) throw new RenderError(result.stderr.trim() || `${command} exited ${String(result.status)}`);
  return { stdout: result.stdout };
}

// ------------------------------------------------------------------------------------------------
// values.schema.json, for the stand-in (helm validates by itself)

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validators = new Map<string, ReturnType<Ajv['compile']>>();

/** The chart's values.schema.json as an ajv validator (cached). */
export function schemaValidator(chartDir: string = CHART_DIR): ReturnType<Ajv['compile']> | undefined {
  const file = path.join(chartDir, 'values.schema.json');
  if (!fs.existsSync(file)) return undefined;
  let validate = validators.get(file);
  if (validate === undefined) {
    validate = ajv.compile(JSON.parse(fs.readFileSync(file, 'utf8')) as object);
    validators.set(file, validate);
  }
  return validate;
}

export function formatSchemaErrors(errors: readonly ErrorObject[]): string[] {
  return errors.map((error) => {
    const where = error.instancePath === '' ? '(root)' : error.instancePath;
    const extra = error.keyword === 'additionalProperties' ? `: ${String((error.params as { additionalProperty: string }).additionalProperty)}` : '';
    const allowed = error.keyword === 'enum' ? ` (${(error.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ')})` : '';
    return `- ${where}: ${error.message ?? error.keyword}${extra}${allowed}`;
  });
}

interface ChartYaml {
  name: string;
  dependencies?: { name: string; alias?: string }[];
}

function readChartYaml(chartDir: string): ChartYaml {
  return parseDocument(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')).toJS() as ChartYaml;
}

/** Checks coalesced values against the chart's schema and, one level down, each dependency's. */
function checkSchemas(chartDir: string, values: Record<string, unknown>): void {
  const problems: string[] = [];
  const check = (dir: string, name: string, scoped: unknown): void => {
    const validate = schemaValidator(dir);
    if (validate !== undefined && !validate(scoped)) problems.push(`${name}:`, ...formatSchemaErrors(validate.errors ?? []));
  };
  const chart = readChartYaml(chartDir);
  check(chartDir, chart.name, values);
  for (const dependency of chart.dependencies ?? []) {
    const key = dependency.alias ?? dependency.name;
    check(path.join(chartDir, 'charts', dependency.name), key, values[key]);
  }
  if (problems.length > 0) {
    throw new RenderError(`values don't meet the specifications of the schema(s) in the following chart(s):\n${problems.join('\n')}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Rendering

function renderText(options: RenderOptions, notes: boolean): string {
  const chartDir = options.chartDir ?? CHART_DIR;
  const release = options.releaseName ?? 'pay';
  const chosen = chartRenderer();
  if (chosen.kind === 'helm') {
    if (notes) {
      const { stdout } = exec('helm', ['install', release, chartDir, '--dry-run=client', ...commonArgs(options)]);
      const at = stdout.indexOf('\nNOTES:\n');
      return at < 0 ? '' : stdout.slice(at + '\nNOTES:\n'.length);
    }
    return exec('helm', ['template', release, chartDir, ...commonArgs(options)]).stdout;
  }
  const args = ['--name', release, ...commonArgs(options)];
  const values = JSON.parse(exec(chosen.binary, [...args, '--show-values', chartDir]).stdout) as Record<string, unknown>;
  checkSchemas(chartDir, values);
  return exec(chosen.binary, [...args, ...(notes ? ['--notes'] : []), chartDir]).stdout;
}

/** Splits helm template's output into objects, each with the template it came from. */
export function parseManifests(text: string): RenderedObject[] {
  const objects: RenderedObject[] = [];
  for (const chunk of text.split(/^---[ \t]*$/m)) {
    if (chunk.trim() === '') continue;
    const source = /^# Source: (.+)$/m.exec(chunk)?.[1] ?? '(unknown)';
    const document = parseDocument(chunk, { uniqueKeys: true });
    if (document.errors.length > 0) {
      throw new Error(`${source} rendered invalid YAML: ${document.errors.map((e) => e.message).join('; ')}\n${chunk}`);
    }
    const object: unknown = document.toJS();
    if (object === null || object === undefined) continue;
    objects.push({ source, object: object as KubeObject });
  }
  return objects;
}

/** Renders the chart; throws a RenderError with the message of a failed render. */
export function render(options: RenderOptions = {}): RenderedObject[] {
  return parseManifests(renderText(options, false));
}

/** Renders NOTES.txt. */
export function renderNotes(options: RenderOptions = {}): string {
  return renderText(options, true);
}

/** The message of a render that must fail; throws when it renders. */
export function renderError(options: RenderOptions): string {
  try {
    render(options);
  } catch (error) {
    if (error instanceof RenderError) return error.message;
    throw error;
  }
  throw new Error(`expected the render to fail; it rendered, with values ${JSON.stringify(options.values)}`);
}

/**
 * A copy of a consumer chart with this chart in its charts/ directory, as `helm dependency build`
 * leaves it. Returns the copy's directory.
 */
export function chartWithDependency(consumerDir: string): string {
  const dir = path.join(scratch(), `chart-${++scratchFiles}`);
  fs.cpSync(consumerDir, dir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'charts'), { recursive: true });
  fs.cpSync(CHART_DIR, path.join(dir, 'charts', 'idempotency-sidecar'), { recursive: true });
  return dir;
}
