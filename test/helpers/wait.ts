/** Polling for a condition that a process or a server reaches in its own time. */

export interface WaitOptions {
  /** Default 10 s. */
  readonly timeoutMs?: number;
  /** Between looks; default 50 ms. */
  readonly intervalMs?: number;
  /** What is waited for, in the error; a function when it should say the state at the time. */
  readonly what?: string | (() => string);
}

/** Resolves once `condition` holds; throws, naming `what`, when it has not within the timeout. */
export async function waitFor(condition: () => boolean | Promise<boolean>, options: WaitOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      const what = typeof options.what === 'function' ? options.what() : (options.what ?? 'condition');
      throw new Error(`${what}: not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}
