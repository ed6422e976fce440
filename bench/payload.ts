/**
 * The request and response bodies of the benchmark, built the same way in every process (the
 * harness completes replay keys with the exact bytes the load generator then sends, so the
 * fingerprints match).
 */

/** A JSON payment request of exactly `size` bytes. */
export function paymentRequestBody(size: number): Buffer {
  const head = '{"amount":1000,"currency":"EUR","customer":"cus_bench","description":"';
  const tail = '"}';
  const padding = size - head.length - tail.length;
  if (!Number.isInteger(size) || padding < 0) {
    throw new TypeError(`body size must be an integer of at least ${head.length + tail.length} bytes (got ${size})`);
  }
  return Buffer.from(head + 'x'.repeat(padding) + tail, 'utf8');
}

/** The upstream's fixed answer: a JSON payment of about 300 bytes. */
export const PAYMENT_RESPONSE_BODY = Buffer.from(
  JSON.stringify({
    id: 'pay_3MtwBwLkdIwHu7ix28a3tqPa',
    object: 'payment',
    amount: 1000,
    currency: 'eur',
    status: 'succeeded',
    customer: 'cus_bench',
    description: 'benchmark payment',
    created: 1700000000,
    livemode: false,
    metadata: { order_id: 'order_0000000000', channel: 'bench' },
    receipt_url: 'https://payments.example.com/receipts/pay_3MtwBwLkdIwHu7ix28a3tqPa',
  }),
  'utf8',
);
