/**
 * The webhook's HTTPS listener: POST /mutate answers AdmissionReviews, GET /healthz says the
 * process serves. The TLS pair is re-read on an interval and swapped in for new connections.
 * Whatever a client sends, the answer is a status and a JSON body: a bad review is a 400, a
 * failure of our own a 500; nothing a request carries can stop the process.
 */
import https from 'node:https';
import type http from 'node:http';
import { ConfigError } from '../errors';
import { listen, logListening, urlOf } from '../listen';
import type { Logger } from '../observability/logger';
import { reviewAdmission } from './admission';
import type { WebhookConfig } from './settings';
import { webhookEnvName } from './settings';
import { describeCertificate, readKeyPairSync } from '../tls/key-pair';
import { reloadServerTls, serverTlsOptions } from '../tls/serving';

/** Larger than any pod the API server stores (etcd's 1.5 MiB request limit), with oldObject beside it. */
const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

/** The API server's webhook timeout is at most 30 s; a request slower than this is not from it. */
const REQUEST_TIMEOUT_MS = 30_000;

/** How long SIGTERM lets a review in progress finish. */
const DRAIN_MS = 10_000;

export interface RunningWebhook {
  readonly url: string;
  close(): Promise<void>;
}

class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length, 'cache-control': 'no-store', ...headers });
  res.end(bytes);
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > MAX_REVIEW_BYTES) {
      reject(new BadRequest(413, `the body is larger than ${MAX_REVIEW_BYTES} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REVIEW_BYTES) {
        reject(new BadRequest(413, `the body is larger than ${MAX_REVIEW_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function createWebhookHandler(config: Pick<WebhookConfig, 'template'>, logger: Logger) {
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'https://webhook.invalid').pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz') {
      if (method === 'GET' || method === 'HEAD') return sendJson(res, 200, { status: 'ok' });
      return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
    }
    if (path !== '/mutate') return sendJson(res, 404, { error: 'not found' });
    if (method !== 'POST') return sendJson(res, 405, { error: 'method not allowed; the API server POSTs AdmissionReviews' }, { allow: 'POST' });

    let body: unknown;
    try {
      const bytes = await readBody(req);
      try {
        body = JSON.parse(bytes.toString('utf8'));
      } catch (error) {
        throw new BadRequest(400, `the body is not JSON: ${error instanceof Error ? error.message : String(error)}`);
      }
    } catch (error) {
      if (!(error instanceof BadRequest)) throw error;
      logger.warn({ status: error.status, error: error.message }, 'malformed admission request');
      return sendJson(res, error.status, { error: error.message }, error.status === 413 ? { connection: 'close' } : {});
    }

    const outcome = reviewAdmission(body, config.template);
    if (!outcome.ok) {
      logger.warn({ status: 400, error: outcome.message }, 'malformed admission review');
      return sendJson(res, 400, { error: outcome.message });
    }
    const { decision } = outcome;
    const where = { uid: outcome.uid, namespace: outcome.namespace, pod: outcome.name };
    if (decision.kind === 'injected') {
      logger.info({ ...where, decision: 'injected', ...decision.injection }, 'sidecar injected');
    } else if (decision.kind === 'denied') {
      logger.warn({ ...where, decision: 'denied', reason: decision.message }, 'pod denied');
    } else {
      logger.debug({ ...where, decision: 'skipped', reason: decision.reason }, 'pod left alone');
    }
    return sendJson(res, 200, outcome.review);
  };
}

export async function startWebhook(config: WebhookConfig, logger: Logger): Promise<RunningWebhook> {
  const paths = { certPath: config.tlsCert, keyPath: config.tlsKey };
  const initial = readKeyPairSync(paths);
  // loadWebhookConfig checked the pair a moment ago; a rotation in between is the only way here.
  if ('problems' in initial) {
    throw new ConfigError(initial.problems.map((p) => `${webhookEnvName(p.file === 'key' ? 'tlsKey' : 'tlsCert')}: ${p.message}`));
  }

  const handler = createWebhookHandler(config, logger);
  const server = https.createServer(serverTlsOptions(initial.pair), (req, res) => {
    handler(req, res).catch((error: unknown) => {
      logger.error({ error: error instanceof Error ? error.stack : String(error) }, 'admission request failed');
      sendJson(res, 500, { error: 'internal error' });
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  // A client that fails the handshake (an untrusting client, a scanner) is its problem, not ours.
  server.on('tlsClientError', (error) => logger.debug({ error: error.message }, 'TLS handshake failed'));

  const address = await listen(server, config.port, config.host, webhookEnvName('port'));
  const reloader = reloadServerTls(server, paths, initial.pair, logger, config.tlsReloadIntervalMs);
  const url = urlOf(address, 'https');
  logListening(
    logger,
    { url, certificate: describeCertificate(initial.pair.cert), template: config.sidecarTemplate, nativeSidecar: config.template.nativeSidecar },
    'idempotency-sidecar webhook listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      reloader.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections (the API server keeps them) are closed as they go idle.
      const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
      const timer = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
      timer.unref();
      await closed;
      clearInterval(idleSweep);
      clearTimeout(timer);
      logger.info('stopped');
    })();
    return closing;
  };
  return { url, close };
}
