/**
 * Runs `idempotency-sidecar webhook` as its own OS process through the package's bin, as the
 * chart's Deployment does, and talks to it over HTTPS with a chosen CA: new connection per
 * request, so a test sees the certificate the server serves now.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { urlField, waitForListening } from './listening-line';
import { killWithParent } from './process-watchdog';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'idempotency-sidecar.js');

export interface WebhookProcess {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Everything the process wrote, stdout and stderr, so far. */
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export interface WebhookOptions {
  /** IDEMPOTENCY_WEBHOOK_* variables; the port and host are set here. */
  readonly env: Readonly<Record<string, string>>;
  readonly args?: readonly string[];
  /** The CA that signed the serving certificate. */
  readonly ca: Buffer;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});


export interface HttpsReply {
  readonly status: number;
  readonly body: string;
  json(): Record<string, unknown>;
}

/** One request on a new connection that trusts only `ca` (unset: the system's CAs). */
export function httpsRequest(
  url: string,
  options: { readonly method?: string; readonly body?: string | Buffer; readonly ca?: Buffer; readonly timeoutMs?: number } = {},
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: options.method ?? 'GET',
        agent: false,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        headers: options.body === undefined ? {} : { 'content-type': 'application/json' },
        timeout: options.timeoutMs ?? 5_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, body, json: () => JSON.parse(body) as Record<string, unknown> });
        });
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(options.body);
  });
}

/** The certificate a new TLS connection that trusts `ca` is served (serial number, upper-case hex). */
export function servedCertificateSerial(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial.toUpperCase());
    });
    socket.on('error', reject);
  });
}

export async function startWebhookProcess(options: WebhookOptions): Promise<WebhookProcess> {
  const child = spawn(process.execPath, [BIN, 'webhook', ...(options.args ?? [])], {
    env: {
      PATH: process.env['PATH'] ?? '',
      // The system picks the port; the "listening" line names it.
      IDEMPOTENCY_WEBHOOK_PORT: '0',
      IDEMPOTENCY_WEBHOOK_HOST: '127.0.0.1',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  killWithParent(child, 'webhook');
  let captured = '';
  child.stdout?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );

  const bound = urlField(await waitForListening(child, () => captured, 'idempotency-sidecar webhook listening', 'webhook'), 'url');
  // Ready means serving over TLS with a certificate this CA signed, not just bound.
  const health = await httpsRequest(`${bound.origin}/healthz`, { ca: options.ca, timeoutMs: 5_000 });
  if (health.status !== 200) {
    child.kill('SIGKILL');
    throw new Error(`webhook /healthz answered ${health.status}:\n${captured}`);
  }

  return {
    url: bound.origin,
    port: Number(bound.port),
    process: child,
    output: () => captured,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
