-- GET /v1/jobs/{id} on a random one of the jobs listed in JOBSTATE_IDS.
local ids = {}
for line in io.lines(os.getenv("JOBSTATE_IDS")) do ids[#ids + 1] = line:match("^(%S+)") end
math.randomseed(os.time())
-- With JOBSTATE_TOKEN set (a server with --tokens), requests carry it.
local token = os.getenv("JOBSTATE_TOKEN")
local auth = token and token ~= "" and ("Bearer " .. token) or nil
local headers = { ["Authorization"] = auth }
request = function()
  return wrk.format("GET", "/v1/jobs/" .. ids[math.random(#ids)], headers)
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx=%d\n", summary.errors.status))
end
