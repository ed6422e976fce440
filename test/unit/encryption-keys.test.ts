/**
 * The configured encryption keys as the configuration loads them: from the variable or the file,
 * the first one encrypting, and a problem as one ConfigError line naming the setting.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load';
import { ConfigError } from '../../src/errors';

/** The keys of a configuration with these settings. */
function loadEncryptionKeys(settings: { readonly encryptionKeys?: string; readonly encryptionKeysFile?: string }) {
  const env: Record<string, string> = { IDEMPOTENCY_UPSTREAM: 'http://127.0.0.1:3000' };
  if (settings.encryptionKeys !== undefined) env['IDEMPOTENCY_ENCRYPTION_KEYS'] = settings.encryptionKeys;
  if (settings.encryptionKeysFile !== undefined) env['IDEMPOTENCY_ENCRYPTION_KEYS_FILE'] = settings.encryptionKeysFile;
  return loadConfig({ argv: [], env }).encryption;
}

const A = randomBytes(32);
const B = randomBytes(32);

describe('the encryption keys of a configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keys-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function file(text: string): string {
    const name = path.join(dir, `keys-${randomBytes(4).toString('hex')}`);
    fs.writeFileSync(name, text);
    return name;
  }

  function problemOf(run: () => unknown): string {
    try {
      run();
    } catch (error) {
      if (error instanceof ConfigError) {
        expect(error.problems).toHaveLength(1);
        return error.problems[0] as string;
      }
      throw error;
    }
    throw new Error('no ConfigError');
  }

  test('no keys: encryption off', () => {
    expect(loadEncryptionKeys({})).toEqual({ keys: [], setting: 'IDEMPOTENCY_ENCRYPTION_KEYS' });
  });

  test('from the variable, in order', () => {
    const loaded = loadEncryptionKeys({ encryptionKeys: `new:${B.toString('base64')}, old:${A.toString('base64')}` });
    expect(loaded).toEqual({ keys: [{ id: 'new', key: B }, { id: 'old', key: A }], setting: 'IDEMPOTENCY_ENCRYPTION_KEYS' });
  });

  test('from the file, skipping comments and blank lines; base64url works too', () => {
    const name = file(`# rotated 2025-01\nnew:${B.toString('base64url')}\n\n  # kept until its records expire\nold:${A.toString('base64')}\n`);
    expect(loadEncryptionKeys({ encryptionKeysFile: name })).toEqual({
      keys: [{ id: 'new', key: B }, { id: 'old', key: A }],
      setting: 'IDEMPOTENCY_ENCRYPTION_KEYS_FILE',
    });
  });

  test('a missing file, or one holding a bad key, is one line naming the setting and never the key', () => {
    expect(problemOf(() => loadEncryptionKeys({ encryptionKeysFile: path.join(dir, 'absent') }))).toMatch(
      /^IDEMPOTENCY_ENCRYPTION_KEYS_FILE: ".*absent" cannot be read \(ENOENT\)/,
    );
    const short = randomBytes(31).toString('base64');
    const message = problemOf(() => loadEncryptionKeys({ encryptionKeysFile: file(`k1:${short}\n`) }));
    expect(message).toMatch(/^IDEMPOTENCY_ENCRYPTION_KEYS_FILE: .* is not base64 of exactly 32 bytes/);
    expect(message).not.toContain(short);
    expect(problemOf(() => loadEncryptionKeys({ encryptionKeys: 'k1' }))).toMatch(/^IDEMPOTENCY_ENCRYPTION_KEYS: key 1 has no id/);
  });
});
