// Stripe's own Node SDK (the `stripe` package pinned in package.json) as an
// independent client for tests/integration/test_31_stripe.py: it signs
// webhooks the payment-stripe plugin must accept, and, pointed at the
// stand-in (tests/standins/stripe_standin.py), proves the stand-in accepts
// what the real SDK sends. One JSON command on argv[2]; one JSON answer on
// stdout. Run with NODE_PATH=tests/sdk/node_modules.
'use strict';
const Stripe = require('stripe');

async function main() {
  const cmd = JSON.parse(process.argv[2]);
  if (cmd.op === 'sign') {
    const stripe = new Stripe('sk_test_unused');
    const opts = {payload: cmd.payload, secret: cmd.secret};
    if (cmd.timestamp !== undefined) opts.timestamp = cmd.timestamp;
    return {header: stripe.webhooks.generateTestHeaderString(opts)};
  }
  const stripe = new Stripe(cmd.key, {
    host: '127.0.0.1', port: cmd.port, protocol: 'http', maxNetworkRetries: 0,
  });
  if (cmd.op === 'checkout') {
    const opts = {idempotencyKey: cmd.idempotencyKey};
    const first = await stripe.checkout.sessions.create(cmd.params, opts);
    const again = await stripe.checkout.sessions.create(cmd.params, opts);
    const read = await stripe.checkout.sessions.retrieve(first.id);
    return {first, again, read};
  }
  if (cmd.op === 'refund') {
    const opts = {idempotencyKey: cmd.idempotencyKey};
    const first = await stripe.refunds.create(cmd.params, opts);
    const again = await stripe.refunds.create(cmd.params, opts);
    return {first, again};
  }
  if (cmd.op === 'list') {
    const list = await stripe.checkout.sessions.list(cmd.params);
    return {data: list.data};
  }
  throw new Error('unknown op ' + cmd.op);
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out)); },
  (err) => {
    process.stdout.write(JSON.stringify({error: {type: err.type, message: err.message,
                                                 statusCode: err.statusCode}}));
    process.exitCode = 1;
  });
