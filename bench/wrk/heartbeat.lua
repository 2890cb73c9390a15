-- POST /v1/jobs/{id}/heartbeat on a random one of the running jobs listed in
-- the file named by JOBSTATE_IDS (one "id lease" per line: each report
-- carries its attempt's Job-Lease). No Connection header is forced: the
-- server must keep connections alive on its own.
local ids, leases = {}, {}
for line in io.lines(os.getenv("JOBSTATE_IDS")) do
  local id, lease = line:match("^(%S+)%s*(%S*)$")
  ids[#ids + 1] = id
  leases[#leases + 1] = lease
end
-- With JOBSTATE_TOKEN set (a server with --tokens), requests carry it.
local token = os.getenv("JOBSTATE_TOKEN")
local auth = token and token ~= "" and ("Bearer " .. token) or nil
local body = '{"progress":{"fraction":0.5,"message":"half way"}}'
math.randomseed(os.time())
request = function()
  local i = math.random(#ids)
  local headers = { ["Content-Type"] = "application/json", ["Job-Lease"] = leases[i],
                    ["Authorization"] = auth }
  return wrk.format("POST", "/v1/jobs/" .. ids[i] .. "/heartbeat", headers, body)
end
-- Count non-2xx answers so a failing run cannot pass as fast.
local errors = 0
response = function(status, headers, body)
  if status >= 300 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
