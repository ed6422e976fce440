/**
 * What users build instead of the sidecar: Express 5, @node-idempotency/core on its Redis storage
 * adapter, and http-proxy-middleware, written as a user following their READMEs would. The core
 * README names an express package, but it is not published, so the middleware is the README's
 * onRequest / onResponse flow by hand: express.json() first (the library fingerprints the parsed
 * body), fixRequestBody to forward that body, responseInterceptor to store the upstream's answer
 * before it goes out. The Redis client is the adapter's own (node-redis). Its own process; port
 * over IPC.
 */
import type { AddressInfo } from 'node:net';
import { Idempotency, IdempotencyError, IdempotencyErrorCodes, type IdempotencyParams } from '@node-idempotency/core';
import { RedisStorageAdapter } from '@node-idempotency/storage-adapter-redis';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createProxyMiddleware, fixRequestBody, responseInterceptor } from 'http-proxy-middleware';

const storage = new RedisStorageAdapter({ url: process.env['BENCH_REDIS'] ?? '' });
const idempotency = new Idempotency(storage, { idempotencyKey: 'idempotency-key' });
const STATUS_OF_ERROR: Record<IdempotencyErrorCodes, number> = {
  [IdempotencyErrorCodes.REQUEST_IN_PROGRESS]: 409,
  [IdempotencyErrorCodes.IDEMPOTENCY_FINGERPRINT_MISSMATCH]: 422,
  [IdempotencyErrorCodes.IDEMPOTENCY_KEY_LEN_EXEEDED]: 400,
  [IdempotencyErrorCodes.IDEMPOTENCY_KEY_MISSING]: 400,
};

async function idempotent(req: Request, res: Response, next: NextFunction): Promise<void> {
  const params: IdempotencyParams = { headers: req.headers, body: req.body as Record<string, unknown> | undefined, path: req.path, method: req.method };
  try {
    const previous = await idempotency.onRequest<string, never>(params);
    if (previous) {
      res.status(Number(previous.additional?.['status'])).type(String(previous.additional?.['contentType'])).send(previous.body);
      return;
    }
  } catch (error) {
    if (!(error instanceof IdempotencyError)) throw error;
    res.status(STATUS_OF_ERROR[error.code]).json({ error: error.message });
    return;
  }
  res.locals['idempotency'] = params;
  next();
}

const proxy = createProxyMiddleware<Request, Response>({
  target: process.env['BENCH_UPSTREAM'] ?? '',
  selfHandleResponse: true,
  on: {
    proxyReq: fixRequestBody,
    proxyRes: responseInterceptor<Request, Response>(async (body, upstream, _req, res) => {
      const params = res.locals['idempotency'] as IdempotencyParams | undefined;
      const additional = { status: upstream.statusCode, contentType: upstream.headers['content-type'] };
      if (params) await idempotency.onResponse(params, { body: body.toString('utf8'), additional });
      return body;
    }),
  },
});

const app = express();
app.use(express.json(), idempotent, proxy);

void storage.connect().then(() => {
  const server = app.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port }));
});
process.on('disconnect', () => process.exit(0));
