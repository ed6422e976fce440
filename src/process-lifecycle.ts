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

export function runUntilSignal(program: string, logger: Logger, start: () => Promise<Closable>): void {
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
