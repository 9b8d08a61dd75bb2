-- wrk script: POSTs every line of NOTICES (one webhook body per line) to the path wrk is given, each exactly
-- once, the lines shared among THREADS threads. wrk runs for its whole -d whatever its threads do, so a
-- thread that has its share answered stops and creates the file DONE_DIR/<thread number>; the caller
-- interrupts wrk (SIGINT) once every thread's file exists. Used by scripts/statement-bench.sh to deliver a
-- generated statement's notices before the statement is imported.
local path = os.getenv("NOTICES")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(os.getenv("THREADS") or "2")
  bodies = {}
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if n % total == index - 1 then bodies[#bodies + 1] = line end
  end
  next_body = 0
  -- wrk calls the first thread's request() once more before the run, to check what it returns: that call
  -- must not use up a body.
  checked = index ~= 1
  answered = 0
  failed = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if not checked then
    checked = true
    return wrk.format(nil, nil, nil, bodies[1])
  end
  next_body = next_body + 1
  local body = bodies[next_body]
  if body == nil then body = bodies[#bodies] end  -- past the end: a resend, answered as a duplicate
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  if answered == #bodies then
    io.open(os.getenv("DONE_DIR") .. "/" .. index, "w"):close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local failures = 0
  for _, thread in ipairs(threads) do failures = failures + thread:get("failed") end
  io.write(string.format("notices: %d requests, %d not answered 200\n", summary.requests, failures))
end
