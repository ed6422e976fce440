/** Renders a SidecarError as RFC 9457 problem+json: the one place the sidecar writes its own answers. */
import type { ServerResponse } from 'node:http';
import type { SidecarError } from './errors';

export interface ProblemBody {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
}

export function problemBody(error: SidecarError): ProblemBody {
  return { type: error.type, title: error.title, status: error.status, detail: error.detail };
}

export function sendProblem(res: ServerResponse, error: SidecarError, options: { closeConnection?: boolean } = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify(problemBody(error)));
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': body.length,
    'cache-control': 'no-store',
  };
  if (error.retryAfterSeconds !== undefined) headers['retry-after'] = error.retryAfterSeconds;
  // An unread request body (413) must not be parsed as the next request on this connection.
  if (options.closeConnection) headers['connection'] = 'close';
  res.writeHead(error.status, headers);
  res.end(body);
}
