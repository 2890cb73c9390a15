-- POST /v1/claims for the type JOBSTATE_CLAIM_TYPE names, without waiting:
-- 200 is a claim, 204 means the queue ran dry. Prints claims_per_s and empty.
local body = '{"types":["' .. os.getenv("JOBSTATE_CLAIM_TYPE") .. '"],"worker":"bench","wait_s":0}'
-- With JOBSTATE_TOKEN set (a server with --tokens), requests carry it.
local token = os.getenv("JOBSTATE_TOKEN")
local auth = token and token ~= "" and ("Bearer " .. token) or nil
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = auth }
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() claims = 0; empty = 0; other = 0 end
request = function() return wrk.format("POST", "/v1/claims", headers, body) end
response = function(status)
  if status == 200 then claims = claims + 1
  elseif status == 204 then empty = empty + 1
  else other = other + 1 end
end
done = function(summary)
  local c, e, o = 0, 0, 0
  for _, t in ipairs(threads) do c = c + t:get("claims"); e = e + t:get("empty"); o = o + t:get("other") end
  io.write(string.format("claims_per_s=%.1f\nempty=%d\nother=%d\n", c / (summary.duration / 1e6), e, o))
end
