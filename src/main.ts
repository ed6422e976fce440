/**
 * The composition root: config -> stores and locks (backends.ts) -> engine -> listeners, and the
 * graceful stop. The config arrives with its files read and checked (the listener's key pair, the
 * encryption keys, the Redis TLS files).
 * Nothing below this file reads the environment or picks an implementation.
 */
import https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { createAdminServer } from './admin/admin-server';
import { createBackends } from './backends';
import { listen, logListening, urlOf } from './listen';
import { createRouteResolver } from './config/routes';
import type { Config } from './config/settings';
import { IdempotencyEngine } from './engine/idempotency-engine';
import { type Logger, logEvents } from './observability/logger';
import { SidecarMetrics } from './observability/metrics';
import { PassThrough } from './proxy/passthrough';
import { BodyBudget } from './proxy/body-budget';
import { createProxyServer } from './proxy/proxy-server';
import { UpstreamClient } from './proxy/upstream-client';
import { EncryptingRecordStore } from './store/encrypting-store';
import { lockResource } from './store/keys';
import { ResponseCipher } from './store/response-cipher';
import { systemClock } from './system-clock';
import { reloadServerTls, serverTlsOptions } from './tls/serving';

/**
 * How often the proxy listener's certificate, key and client CA files are re-read. Kubelet
 * refreshes a mounted Secret within about a minute; 10 s adds little to that and costs three
 * small reads.
 */
const TLS_RELOAD_INTERVAL_MS = 10_000;
/**
 * Once the grace period is over and the calls still in flight are abandoned, how long their
 * handlers get to answer their clients and settle their records (one store round trip each),
 * so that a store that does not answer cannot hold the exit (contract section 5: about a second).
 */
const ABANDON_SETTLE_MS = 1_000;

export interface RunningSidecar {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** Stops accepting, lets in-flight requests finish within the grace period, closes the stores. */
  close(): Promise<void>;
}

export async function startSidecar(config: Config, logger: Logger): Promise<RunningSidecar> {
  const { listenerTls, encryption } = config;
  const metrics = new SidecarMetrics();
  const unsubscribe = [logEvents(logger), metrics.listen()];
  const backends = createBackends(config, logger);
  // Always wrapped, keys or not: without keys it still refuses sealed records (encryption turned
  // off while they live) rather than replay ciphertext. The cipher sits outside the timing, so
  // the store histogram measures the store alone.
  const store = new EncryptingRecordStore(metrics.timeStore(backends.store), {
    ...(encryption.keys.length > 0 ? { cipher: new ResponseCipher(encryption.keys) } : {}),
    keySetting: encryption.setting,
  });
  const upstream = new UpstreamClient({ origin: config.upstream, timeoutMs: config.upstreamTimeoutMs });
  const passThrough = new PassThrough(config.upstream, config.upstreamTimeoutMs);
  const engine = new IdempotencyEngine(
    {
      store,
      ...(backends.locks ? { locks: metrics.timeLocks(backends.locks) } : {}),
      upstream: metrics.timeUpstream(upstream),
      lockResource,
      clock: systemClock,
    },
    {
      lockTtlMs: config.lockTtlMs,
      waitTimeoutMs: config.waitTimeoutMs,
      maxWaiters: config.maxWaiters,
      onUnknown: config.onUnknown,
      storeUnavailable: config.storeUnavailable,
      releaseStatuses: new Set(config.releaseStatuses),
    },
  );
  const bodyBudget = new BodyBudget(config.maxBodyMemory);
  metrics.observeBodyMemory(() => bodyBudget.inUse);
  const proxy = createProxyServer({
    resolveRoute: createRouteResolver(config),
    engine,
    passThrough,
    maxBody: config.maxBody,
    tenantHeaders: config.tenantHeaders,
    tenantFrom: config.tenantFrom,
    tenantMissing: config.tenantMissing,
    bodyBudget,
    ...(listenerTls === undefined ? {} : { tls: serverTlsOptions(listenerTls.pair) }),
    limits: {
      headersTimeoutMs: config.clientHeaderTimeoutMs,
      requestTimeoutMs: config.clientRequestTimeoutMs,
      maxHeaderSize: config.maxHeaderSize,
    },
  });
  const tlsServer = proxy.server instanceof https.Server ? proxy.server : undefined;
  if (tlsServer !== undefined) {
    // A refused handshake (no certificate, one from another CA, a scanner) never becomes a
    // request; the line says why, never who (the error names no subject).
    tlsServer.on('tlsClientError', (error, socket) =>
      logger.info({ error: error.message, remoteAddress: socket.remoteAddress }, 'TLS handshake refused on the proxy listener'),
    );
  }
  const admin = createAdminServer({
    store,
    ...(config.adminToken ? { adminToken: config.adminToken } : {}),
    renderMetrics: () => metrics.render(),
    logger,
  });

  const proxyAddress = await listen(proxy.server, config.port, config.host, 'IDEMPOTENCY_PORT');
  const adminAddress = await listen(admin, config.adminPort, config.host, 'IDEMPOTENCY_ADMIN_PORT');
  // With port 0 the system picked the ports: the URLs, and the line below, name the bound ones.
  const proxyUrl = urlOf(proxyAddress, listenerTls === undefined ? 'http' : 'https');
  const adminUrl = urlOf(adminAddress);
  const reloader =
    listenerTls === undefined || tlsServer === undefined
      ? undefined
      : reloadServerTls(tlsServer, listenerTls.paths, listenerTls.pair, logger, TLS_RELOAD_INTERVAL_MS);
  logListening(
    logger,
    {
      proxy: proxyUrl,
      admin: adminUrl,
      upstream: config.upstream.origin,
      tenantFrom: config.tenantFrom,
      ...(listenerTls === undefined ? {} : { clientCertificates: listenerTls.pair.ca === undefined ? 'not requested' : 'required' }),
      encryptionKeyId: encryption.keys[0]?.id ?? null,
    },
    'idempotency-sidecar listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info({ graceMs: config.shutdownGraceMs }, 'shutting down: no new connections, finishing in-flight requests');
      reloader?.stop();
      const proxyClosed = new Promise<void>((resolve) => proxy.server.close(() => resolve()));
      // Keep-alive connections that go idle during the drain are closed as they do.
      const idleSweep = setInterval(() => proxy.server.closeIdleConnections(), 100);
      const grace = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), config.shutdownGraceMs).unref());
      // In flight means requests still being handled, and responses still being written to a
      // store that blinked (the engine retries those after answering).
      const drained = await Promise.race([
        Promise.all([proxyClosed, proxy.settled().then(() => engine.settled())]).then(() => 'drained' as const),
        grace,
      ]);
      clearInterval(idleSweep);
      if (drained === 'timeout') {
        logger.warn({ graceMs: config.shutdownGraceMs }, 'grace period over: abandoning the upstream calls still in flight, closing the connections still open');
        // Whatever the upstream timeout: each abandoned call becomes an unknown outcome, its
        // client is answered while its connection is open, and its lock is released.
        engine.abandon();
        await Promise.race([proxy.settled(), delay(ABANDON_SETTLE_MS, undefined, { ref: false })]);
      }
      proxy.server.closeAllConnections();
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      admin.closeAllConnections();
      passThrough.close();
      await upstream.close();
      await backends.close();
      for (const stop of unsubscribe) stop();
      logger.info('stopped');
    })();
    return closing;
  };

  return { proxyUrl, adminUrl, close };
}
