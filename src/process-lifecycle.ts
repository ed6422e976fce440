/**
 * How every long-running command of the program lives and dies: exit 2 with one line per
 * configuration problem, run until SIGTERM or SIGINT, then close gracefully and exit 0 (1 if
 * closing failed, or if starting failed for any other reason).
 */
import { ConfigError } from './errors';
import type { Logger } from './observability/logger';

/** Prints one line per problem, prefixed with the program's name, and exits 2. */
export function exitWithConfigProblems(program: string, problems: readonly string[]): never {
  for (const problem of problems) process.stderr.write(`${program}: ${problem}\n`);
  process.exit(2);
}

export interface Closable {
  close(): Promise<void>;
}

/**
 * Logs every promise rejection nobody handled, as one line at error level, and keeps serving.
 * Node's default would end the process at once: every upstream call in flight on this replica
 * would become an unknown outcome, held until a person settles it, and its locks would stay
 * until they expire. A rejection nobody awaited belongs to work that has already answered (or
 * given up on) its client, so the state it leaves behind is its own; the line makes the bug
 * visible without taking the other requests down with it. (Uncaught exceptions keep Node's
 * default exit: a throw can leave a half-done synchronous state behind.)
 */
export function logUnhandledRejections(logger: Logger): void {
  process.on('unhandledRejection', (reason: unknown) => {
    logger.error({ error: reason instanceof Error ? reason.stack : String(reason) }, 'unhandled promise rejection (a bug): logged, the process keeps serving');
  });
}

export function runUntilSignal(program: string, logger: Logger, start: () => Promise<Closable>): void {
  logUnhandledRejections(logger);
  start().then(
    (running) => {
      let stopping = false;
      const stop = (signal: NodeJS.Signals): void => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'signal received');
        running.close().then(
          () => process.exit(0),
          (error: unknown) => {
            logger.error({ error: error instanceof Error ? error.message : String(error) }, 'error while stopping');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
    (error: unknown) => {
      if (error instanceof ConfigError) exitWithConfigProblems(program, error.problems);
      logger.fatal({ error: error instanceof Error ? error.stack : String(error) }, 'failed to start');
      process.exit(1);
    },
  );
}
