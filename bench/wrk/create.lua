-- POST /v1/jobs: queued jobs of the type JOBSTATE_CLAIM_TYPE names, for claims to take.
local body = '{"type":"' .. os.getenv("JOBSTATE_CLAIM_TYPE") .. '","params":{"n":1}}'
local headers = { ["Content-Type"] = "application/json" }
request = function() return wrk.format("POST", "/v1/jobs", headers, body) end
