/**
 * `Expect: 100-continue` on a pipelined connection. Left to itself, Node answers the expectation
 * with an interim 100 Continue as soon as the request head is parsed. When the response is still
 * queued behind an earlier one on the connection, that 100 is buffered, and a final answer written
 * with a Buffer body before the queue reaches it gets its head put in front of the buffered 100
 * (final head, 100 Continue, body): the client reads the interim response as body bytes, and the
 * framing of every later answer on the connection is lost. A payment executed upstream then
 * reaches its client garbled.
 *
 * So the interim answer goes out only while the response owns the socket: at once when it does,
 * else when the queue hands the socket to it, and not at all when the final head is already
 * written by then (a final answer without 100 Continue is allowed; Node then closes the
 * connection after it, so an unread body is never parsed as a request).
 */
import type http from 'node:http';

export function continueInOrder(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    if (res.socket !== null) {
      res.writeContinue();
    } else {
      res.once('socket', () => {
        if (!res.headersSent) res.writeContinue();
      });
    }
    handler(req, res);
  };
}
