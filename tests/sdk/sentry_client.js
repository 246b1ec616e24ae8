// Sentry's own Node SDK (@sentry/node), pointed at a DSN given on the
// command line, captures one exception and one message and flushes: the
// independent client that proves tests/standins/sentry_standin.py accepts
// real envelopes (tests/integration/test_47_monitor.py).
// Usage: node sentry_client.js '{"dsn": "...", "text": "..."}'
"use strict";
const Sentry = require("@sentry/node");

async function main() {
  const args = JSON.parse(process.argv[2]);
  Sentry.init({
    dsn: args.dsn,
    release: "sdk-check@1.0.0",
    environment: "sdk-test",
    defaultIntegrations: false,
    tracesSampleRate: 0,
  });
  const ids = [];
  ids.push(Sentry.captureException(new Error(args.text)));
  ids.push(Sentry.captureMessage(args.text + " (message)", "warning"));
  const flushed = await Sentry.flush(10000);
  process.stdout.write(JSON.stringify({ flushed, ids }) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
