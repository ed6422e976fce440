/**
 * What the guarded path checks about a request before anything is claimed: that it can be
 * forwarded as it stands. undici refuses some shapes only when asked to send them (two Host
 * headers, an asterisk or an odd absolute target); caught there, after the claim, they would look
 * like a request that was sent and never answered (an unknown outcome, held for a day). Caught
 * here, they get 400 (or 501 for a transfer coding the sidecar does not decode) and nothing is
 * claimed.
 */
import type http from 'node:http';
import { SidecarError } from '../errors';

export type TargetResult =
  /** `target`: the origin-form target (path and query) to forward, fingerprint and match. */
  | { readonly ok: true; readonly target: string }
  | { readonly ok: false; readonly error: SidecarError };

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;

/**
 * The origin form of a request target (RFC 9112 section 3.2): an origin-form target as it is; an
 * absolute-form `http://host/x?y` (which a server must accept) as `/x?y`. An asterisk, another
 * scheme, an empty authority or one with credentials (deprecated by RFC 9110 section 4.2.4, and
 * never something to pass on) get 400.
 */
export function originFormTarget(target: string): TargetResult {
  if (target.startsWith('/')) return { ok: true, target };
  if (target === '*') return refuse('The asterisk target (*) is for OPTIONS only.');
  const absolute = ABSOLUTE.exec(target);
  if (absolute === null) return refuse('The request target is neither a path nor an absolute http(s) URL.');
  const scheme = absolute[1] ?? '';
  const authority = absolute[2] ?? '';
  const rest = absolute[3] ?? '';
  if (!/^https?$/i.test(scheme)) return refuse(`The request target's scheme (${scheme.slice(0, 16)}) is not http or https.`);
  if (authority.includes('@')) return refuse('The request target carries credentials (user:password@); send them in a header instead.');
  if (authority === '') return refuse('The request target has an empty authority.');
  if (rest.startsWith('#')) return refuse('The request target carries a fragment.');
  return { ok: true, target: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest };
}

/**
 * The path of a target for logs: never the authority of an absolute-form target, which may hold
 * credentials, and never the query, which may hold anything.
 */
export function loggablePath(target: string): string {
  let path = target;
  if (!target.startsWith('/')) {
    const absolute = ABSOLUTE.exec(target);
    if (absolute === null) return target === '*' ? '*' : '(not a path)';
    path = absolute[3] || '/';
  }
  const query = path.search(/[?#]/);
  return query === -1 ? path : path.slice(0, query);
}

/** RFC 9112 section 3.2: a request with more than one Host field gets 400. */
export function hostProblem(req: http.IncomingMessage): SidecarError | undefined {
  const hosts = req.headersDistinct['host'];
  if (hosts !== undefined && hosts.length > 1) {
    return new SidecarError('bad-request', { detail: 'The request carries more than one Host header; it was not forwarded.' });
  }
  if (hosts === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
    return new SidecarError('bad-request', { detail: 'An HTTP/1.1 request must carry a Host header; the request was not forwarded.' });
  }
  return undefined;
}

/**
 * Node's parser decodes `chunked` and nothing else: a guarded body sent with another coding
 * (`gzip, chunked`) would be fingerprinted and forwarded as coded bytes without its coding. RFC
 * 9112 section 6.1: a coding the server does not understand gets 501; a request whose final coding
 * is not chunked has no framing at all, and gets 400 (section 6.3).
 */
export function transferCodingProblem(req: http.IncomingMessage): SidecarError | undefined {
  const codings = req.headersDistinct['transfer-encoding'];
  if (codings === undefined) return undefined;
  const tokens = codings.join(',').split(',').map((token) => token.trim().toLowerCase()).filter((token) => token !== '');
  if (tokens.length === 1 && tokens[0] === 'chunked') return undefined;
  if (tokens.at(-1) !== 'chunked') {
    return new SidecarError('bad-request', {
      detail: 'The request body is not framed: its last transfer coding is not chunked. It was not forwarded.',
    });
  }
  return new SidecarError('transfer-coding-unsupported', {
    detail: `The request body's transfer coding (${tokens.join(', ').slice(0, 100)}) is not supported on a guarded request; send it with chunked alone or a Content-Length.`,
  });
}

/**
 * Drops an upgrade offer from a request handled as plain HTTP (a guarded one, or one with a body),
 * so that nothing passed on can switch the connection's protocol. The connection closes after the
 * answer: Node discards whatever was pipelined behind an upgrade request it did not switch for,
 * and a client waiting for those answers would wait for ever. Its next requests go on a new
 * connection, parsed and guarded as usual.
 */
export function dropUpgradeOffer(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.headers.upgrade === undefined) return;
  delete req.headers.upgrade;
  // Read by the pass-through (http-proxy sends it upstream and answers the client with it).
  req.headers.connection = 'close';
  res.shouldKeepAlive = false;
}

function refuse(detail: string): TargetResult {
  return { ok: false, error: new SidecarError('bad-request', { detail: `${detail} The request was not forwarded.` }) };
}
