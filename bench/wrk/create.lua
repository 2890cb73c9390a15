-- POST /v1/jobs: queued jobs of the type JOBSTATE_CLAIM_TYPE names, for claims to take.
local body = '{"type":"' .. os.getenv("JOBSTATE_CLAIM_TYPE") .. '","params":{"n":1}}'
-- With JOBSTATE_TOKEN set (a server with --tokens), requests carry it.
local token = os.getenv("JOBSTATE_TOKEN")
local auth = token and token ~= "" and ("Bearer " .. token) or nil
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = auth }
request = function() return wrk.format("POST", "/v1/jobs", headers, body) end
