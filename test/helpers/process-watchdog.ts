/**
 * Kills a child process when this process ends, however it ends. Under Jest a test file's
 * `process` is a copy whose 'exit' never fires, and a SIGKILLed worker or benchmark runs no hook
 * at all: a `sh` holding a pipe from this process kills the child when the pipe closes (SIGCONT
 * first, so a child frozen by a fault test can die). The `sh` is killed when the child exits, so
 * it never signals a reused pid.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';

export function killWithParent(child: ChildProcess, name: string): void {
  if (child.pid === undefined) return;
  const watchdog = spawn('sh', ['-c', 'read _ignored; kill -CONT "$1" 2>/dev/null; kill -9 "$1" 2>/dev/null', `${name}-watchdog`, String(child.pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  if (watchdog.stdin instanceof net.Socket) watchdog.stdin.unref();
  child.once('exit', () => watchdog.kill('SIGKILL'));
}
