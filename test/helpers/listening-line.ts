/**
 * The addresses a child process bound, read from its "listening" log line: the sidecar and the
 * webhook are started on port 0 and say which ports the system gave them, so no test picks a
 * port and hopes it stays free until the child binds it.
 */
import type { ChildProcess } from 'node:child_process';

const READY_TIMEOUT_MS = 15_000;
const POLL_MS = 20;

/** The JSON log lines in a process's output (other lines, e.g. on stderr, are skipped). */
export function jsonLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * Resolves with the first log line whose `msg` is `message`, once the child has written it;
 * rejects, with the output so far, when the child exits first or nothing comes within 15 s.
 */
export async function waitForListening(child: ChildProcess, output: () => string, message: string, name: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    // Only lines that can be it are parsed: a busy process's output may be long.
    const candidates = output()
      .split('\n')
      .filter((text) => text.startsWith('{') && text.includes(message));
    const line = jsonLines(candidates.join('\n')).find((entry) => entry['msg'] === message);
    if (line !== undefined) return line;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited with ${child.exitCode ?? child.signalCode} before it was listening:\n${output()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not log "${message}" within ${READY_TIMEOUT_MS / 1000} s (IDEMPOTENCY_LOG_LEVEL=silent hides it):\n${output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The string field `field` of a log line, which must be a URL. */
export function urlField(line: Record<string, unknown>, field: string): URL {
  const value = line[field];
  if (typeof value !== 'string') throw new Error(`the listening line has no ${field}: ${JSON.stringify(line)}`);
  return new URL(value);
}
