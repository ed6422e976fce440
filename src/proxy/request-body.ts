/**
 * Reads a guarded request's body, up to the limit, feeding each chunk to a callback (the
 * fingerprint) as it arrives so the bytes are walked once. The bytes are taken from the process's
 * body budget as they are held: a declared length at once, a chunked body chunk by chunk.
 */
import type { IncomingMessage } from 'node:http';
import type { BodyShare } from './body-budget';

export type BodyReadResult =
  | { readonly kind: 'body'; readonly body: Buffer }
  | { readonly kind: 'too-large' }
  /** The body budget cannot hold it now. */
  | { readonly kind: 'busy' }
  | { readonly kind: 'aborted' };

export function readRequestBody(
  req: IncomingMessage,
  maxBytes: number,
  share: BodyShare,
  onChunk: (chunk: Buffer) => void,
): Promise<BodyReadResult> {
  const header = req.headers['content-length'];
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > maxBytes) return Promise.resolve({ kind: 'too-large' });
  if (declared !== undefined && !share.take(declared)) return Promise.resolve({ kind: 'busy' });

  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (result: BodyReadResult): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('aborted', onAbort);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        finish({ kind: 'too-large' });
        return;
      }
      if (declared === undefined && !share.take(chunk.length)) {
        req.pause();
        finish({ kind: 'busy' });
        return;
      }
      onChunk(chunk);
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ kind: 'body', body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
    const onAbort = (): void => finish({ kind: 'aborted' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('aborted', onAbort);
  });
}
