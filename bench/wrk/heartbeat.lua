-- POST /v1/jobs/{id}/heartbeat on a random one of the running jobs listed in
-- the file named by JOBSTATE_IDS (one id per line). No Connection header is
-- forced: the server must keep connections alive on its own.
local ids = {}
for line in io.lines(os.getenv("JOBSTATE_IDS")) do ids[#ids + 1] = line end
local body = '{"progress":{"fraction":0.5,"message":"half way"}}'
local headers = { ["Content-Type"] = "application/json" }
math.randomseed(os.time())
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("POST", "/v1/jobs/" .. id .. "/heartbeat", headers, body)
end
-- Count non-2xx answers so a failing run cannot pass as fast.
local errors = 0
response = function(status, headers, body)
  if status >= 300 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
