/** Writes an upstream response, fresh or replayed, with its end-to-end headers and body bytes. */
import type { ServerResponse } from 'node:http';
import type { StoredResponse } from '../engine/record';

export const REPLAYED_HEADER = 'idempotent-replayed';

/** Statuses that never carry a body (RFC 9110 section 6.4.1). */
function hasNoBody(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status < 200);
}

export function writeStoredResponse(res: ServerResponse, response: StoredResponse, replayed: boolean): void {
  if (res.destroyed) return; // the client went away; the response is stored all the same
  const flat: string[] = [];
  for (const [name, value] of response.headers) {
    // Content-Length is recomputed from the bytes we hold; the upstream's framing is gone.
    if (name === 'content-length') continue;
    flat.push(name, value);
  }
  const noBody = hasNoBody(response.status);
  if (!noBody) flat.push('content-length', String(response.body.length));
  if (replayed) flat.push(REPLAYED_HEADER, 'true');
  res.writeHead(response.status, flat);
  res.end(noBody ? undefined : response.body);
}
