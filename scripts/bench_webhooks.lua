-- wrk script for `make bench`: replays pre-signed webhooks, each for a
-- different pending order, split between wrk's threads.
-- The events file has one "<signature header>\t<body>" per line.
-- BENCH_WEBHOOK_PATH (default /api/webhooks/sandbox) and BENCH_SIG_HEADER
-- (default Sandbox-Signature) name the gateway (scripts/bench_payments.py:
-- /api/webhooks/stripe, Stripe-Signature).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  events = {}
  local n = 0
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
  for line in io.lines(os.getenv("BENCH_EVENTS")) do
    if n % nthreads == id then
      local sig, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(events, {sig = sig, body = body})
    end
    n = n + 1
  end
  next_event = 1
  path = os.getenv("BENCH_WEBHOOK_PATH") or "/api/webhooks/sandbox"
  sig_header = os.getenv("BENCH_SIG_HEADER") or "Sandbox-Signature"
end

function request()
  local e = events[next_event]
  if not e then
    e = events[1]  -- ran out: replays (duplicates) from here on
  else
    next_event = next_event + 1
  end
  return wrk.format("POST", path,
                    {["Content-Type"] = "application/json", [sig_header] = e.sig},
                    e.body)
end
