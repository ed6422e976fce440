/**
 * A promise rejection nobody handles is logged, one line at error level, and the process keeps
 * serving until SIGTERM, then exits 0 (process-lifecycle.ts says why it does not exit). The
 * lifecycle every long-running command runs under (runUntilSignal), built, in a process of its
 * own: a test file's `process` under Jest is a copy that real process events never reach.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { jsonLines } from '../helpers/listening-line';
import { killWithParent } from '../helpers/process-watchdog';
import { waitFor } from '../helpers/wait';

const DIST = path.resolve(__dirname, '..', '..', 'dist');

const PROGRAM = `
const { runUntilSignal } = require(${JSON.stringify(path.join(DIST, 'process-lifecycle.js'))});
const { createLogger } = require(${JSON.stringify(path.join(DIST, 'observability', 'logger.js'))});
const logger = createLogger('info');
runUntilSignal('lifecycle-test', logger, async () => {
  // A fire-and-forget chain with no catch, as a bug would leave one.
  setTimeout(() => void Promise.reject(new Error('nobody handles this')), 10);
  // Still serving afterwards: a timer that keeps ticking.
  setTimeout(() => setInterval(() => logger.info('still serving'), 20), 50);
  return { close: async () => logger.info('closed') };
});
`;

test('an unhandled rejection is logged once at error level; the process keeps serving and exits 0 on SIGTERM', async () => {
  const child = spawn(process.execPath, ['-e', PROGRAM], { stdio: ['ignore', 'pipe', 'pipe'] });
  killWithParent(child, 'lifecycle');
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const rejectionLines = (): Record<string, unknown>[] => jsonLines(output).filter((line) => String(line['msg']).startsWith('unhandled promise rejection'));
  const serving = (): number => jsonLines(output).filter((line) => line['msg'] === 'still serving').length;
  await waitFor(() => rejectionLines().length > 0 && serving() >= 3, { what: () => `the rejection logged and the process serving after it:\n${output}` });

  const lines = rejectionLines();
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ level: 'error' });
  expect(String(lines[0]?.['error'])).toMatch(/^Error: nobody handles this/);
  expect(child.exitCode).toBeNull();

  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(jsonLines(output).some((line) => line['msg'] === 'closed')).toBe(true);
});
