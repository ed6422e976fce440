/**
 * Everything that is not guarded goes through http-proxy, streamed both ways with no store access;
 * upgrades go through a raw tunnel (upgrade-tunnel.ts). Also used to forward a guarded request unguarded (no key, or the store is
 * down in `passthrough` mode), replaying the body already read.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import { SidecarError } from '../errors';
import { sendProblem } from '../problem';
import { tunnelUpgrade } from './upgrade-tunnel';

export class PassThrough {
  private readonly proxy: httpProxy;
  private readonly agent: http.Agent;

  constructor(
    private readonly origin: URL,
    timeoutMs: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    this.proxy = httpProxy.createProxyServer({
      target: origin.origin,
      agent: this.agent,
      xfwd: false,
      proxyTimeout: timeoutMs,
    });
    this.proxy.on('error', (error, _req, resOrSocket) => {
      if (resOrSocket instanceof http.ServerResponse) {
        sendProblem(
          resOrSocket,
          new SidecarError('upstream-error', { detail: 'The upstream could not be reached or failed to answer.', cause: error }),
        );
      } else {
        (resOrSocket as Duplex).destroy();
      }
    });
  }

  web(req: http.IncomingMessage, res: http.ServerResponse, bufferedBody?: Buffer): void {
    if (bufferedBody === undefined) {
      this.proxy.web(req, res);
      return;
    }
    this.proxy.web(req, res, { buffer: Readable.from(bufferedBody.length > 0 ? [bufferedBody] : []) });
  }

  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    tunnelUpgrade(this.origin, req, socket, head);
  }

  close(): void {
    this.proxy.close();
    this.agent.destroy();
  }
}
