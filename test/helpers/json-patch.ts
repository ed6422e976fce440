/**
 * A small RFC 6902 JSON Patch apply for tests, strict the way the Kubernetes API server's is: an
 * operation on a path whose parent does not exist fails the whole patch, so a patch that only works
 * on the pods a unit test happened to build is caught. Supports add, remove, replace and test.
 */

export interface PatchOperation {
  readonly op: string;
  readonly path: string;
  readonly value?: unknown;
}

/** RFC 6901: `~1` is `/` and `~0` is `~`, decoded in that order. */
function tokensOf(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error(`${JSON.stringify(pointer)} is not a JSON pointer`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return value !== null && typeof value === 'object';
}

function arrayIndex(token: string, length: number, forAdd: boolean): number {
  if (forAdd && token === '-') return length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw new Error(`${JSON.stringify(token)} is not an array index`);
  const index = Number(token);
  if (index > (forAdd ? length : length - 1)) throw new Error(`index ${index} is out of bounds (length ${length})`);
  return index;
}

/** Applies `operations` to a deep copy of `document` and returns it; throws on the first failing one. */
export function applyJsonPatch<T>(document: T, operations: readonly PatchOperation[]): T {
  let root: unknown = structuredClone(document);
  for (const operation of operations) {
    const tokens = tokensOf(operation.path);
    if (tokens.length === 0) {
      if (operation.op === 'add' || operation.op === 'replace') root = structuredClone(operation.value);
      else if (operation.op === 'test') {
        if (JSON.stringify(root) !== JSON.stringify(operation.value)) throw new Error('test failed at the root');
      } else throw new Error(`${operation.op} of the whole document is not supported`);
      continue;
    }
    let parent: unknown = root;
    for (const token of tokens.slice(0, -1)) {
      if (!isContainer(parent)) throw new Error(`${operation.path}: the parent does not exist`);
      parent = Array.isArray(parent) ? parent[arrayIndex(token, parent.length, false)] : parent[token];
    }
    if (!isContainer(parent)) throw new Error(`${operation.path}: the parent does not exist`);
    const last = tokens[tokens.length - 1] as string;
    const value = structuredClone(operation.value);
    if (Array.isArray(parent)) {
      switch (operation.op) {
        case 'add':
          parent.splice(arrayIndex(last, parent.length, true), 0, value);
          break;
        case 'remove':
          parent.splice(arrayIndex(last, parent.length, false), 1);
          break;
        case 'replace':
          parent[arrayIndex(last, parent.length, false)] = value;
          break;
        case 'test':
          if (JSON.stringify(parent[arrayIndex(last, parent.length, false)]) !== JSON.stringify(value)) throw new Error(`test failed at ${operation.path}`);
          break;
        default:
          throw new Error(`unsupported op ${operation.op}`);
      }
    } else {
      const object = parent;
      switch (operation.op) {
        case 'add':
          object[last] = value;
          break;
        case 'remove':
        case 'replace':
          if (!(last in object)) throw new Error(`${operation.path}: does not exist`);
          if (operation.op === 'remove') delete object[last];
          else object[last] = value;
          break;
        case 'test':
          if (JSON.stringify(object[last]) !== JSON.stringify(value)) throw new Error(`test failed at ${operation.path}`);
          break;
        default:
          throw new Error(`unsupported op ${operation.op}`);
      }
    }
  }
  return root as T;
}
