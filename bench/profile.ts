/**
 * Reads a V8 .cpuprofile (written by `node --cpu-prof`) and sums self time per function and per
 * place (a file of the sidecar, a package, Node's internals), optionally within a time window.
 * V8 stamps samples with the monotonic clock in microseconds, the clock of process.hrtime, so the
 * harness can pass the window of the measured load in its own hrtime.
 */
import fs from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  /** Where: the file of the sidecar, the package, or Node's internal module. */
  readonly where: string;
  readonly selfMs: number;
  /** Share of the busy time (all samples but idle) in the window. */
  readonly percent: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** Milliseconds sampled in the window, and how much of it was busy (not idle). */
  readonly windowMs: number;
  readonly busyMs: number;
  readonly windowed: boolean;
  readonly topFunctions: readonly SelfTime[];
  readonly topPlaces: readonly SelfTime[];
  /**
   * Self time charged to the nearest frame (the function itself or a caller) that is the
   * sidecar's code or a package: which component's work it was, Node's internals included.
   */
  readonly topOwners: readonly SelfTime[];
}

/** The sidecar's own code or a package: a frame that owns the work below it. */
function isOwner(url: string): boolean {
  return url.includes('/node_modules/') || url.includes('/dist/');
}

/** `dist/store/redis-store.js` for the sidecar's files, the package name, or `node:internal/...`. */
export function placeOf(url: string): string {
  if (url === '') return '(native / V8)';
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('/node_modules/');
  if (modules !== -1) {
    const rest = path.slice(modules + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? path);
  }
  const dist = path.lastIndexOf('/dist/');
  if (dist !== -1) return path.slice(dist + 1);
  if (path.startsWith('node:')) return path;
  return path;
}

export function summariseProfile(file: string, window?: { readonly startUs: number; readonly endUs: number }, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parentOf.set(child, node.id);
  }
  /** The nearest ancestor that is JavaScript with a source: who called a native function. */
  const jsCaller = (id: number): CallFrame | undefined => {
    for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && frame.url !== '') return frame;
    }
    return undefined;
  };
  /** The nearest ancestor in the sidecar's code or a package (else the nearest JavaScript one). */
  const ownerCaller = (id: number): CallFrame | undefined => {
    for (let at = parentOf.get(id); at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && isOwner(frame.url)) return frame;
    }
    return jsCaller(id);
  };
  // Windowing only when the window overlaps the profile: else the clocks disagree; use it all.
  const windowed = window !== undefined && window.startUs < profile.endTime && window.endUs > profile.startTime;
  const selfUs = new Map<number, number>();
  let time = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    time += profile.timeDeltas[i] ?? 0;
    // A sample's time is charged to the sample that follows it; the next delta is its duration.
    const duration = profile.timeDeltas[i + 1] ?? 0;
    if (windowed && (time < window.startUs || time > window.endUs)) continue;
    const id = profile.samples[i] ?? -1;
    selfUs.set(id, (selfUs.get(id) ?? 0) + duration);
  }
  const ownerOf = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame && isOwner(frame.url)) return placeOf(frame.url);
    }
    return '(node internals, no package frame above)';
  };
  const functions = new Map<string, { name: string; where: string; us: number }>();
  const places = new Map<string, number>();
  const owners = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (!frame) continue;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    // A native function (a binding such as writev, or a V8 builtin) is shown with its JavaScript
    // caller, and its time is charged to that caller's place; GC and (program) stand alone.
    const special = frame.url === '' && name.startsWith('(');
    const caller = frame.url === '' && !special ? jsCaller(id) : undefined;
    const calledUnder = frame.url === '' && !special ? ownerCaller(id) : undefined;
    const where = special
      ? ''
      : frame.url !== ''
        ? `${placeOf(frame.url)}:${frame.lineNumber + 1}`
        : calledUnder
          ? `native, under ${calledUnder.functionName || '(anonymous)'} ${placeOf(calledUnder.url)}:${calledUnder.lineNumber + 1}`
          : 'native';
    const key = `${name}@${where}`;
    const entry = functions.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    const place = special ? name : frame.url !== '' ? placeOf(frame.url) : caller ? placeOf(caller.url) : '(native)';
    places.set(place, (places.get(place) ?? 0) + us);
    const owner = special ? name : ownerOf(id);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const percent = (us: number): number => (busyUs > 0 ? (100 * us) / busyUs : 0);
  const topFunctions = [...functions.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((entry) => ({ name: entry.name, where: entry.where, selfMs: entry.us / 1000, percent: percent(entry.us) }));
  const ranked = (map: ReadonlyMap<string, number>): SelfTime[] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([where, us]) => ({ name: where, where, selfMs: us / 1000, percent: percent(us) }));
  return { file, windowMs: totalUs / 1000, busyMs: busyUs / 1000, windowed, topFunctions, topPlaces: ranked(places), topOwners: ranked(owners) };
}
