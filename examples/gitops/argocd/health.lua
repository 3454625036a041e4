-- Argo CD health of a kubeinfer.io/InferenceEndpoint, read from the status the operator
-- writes: the Ready condition, Progressing while a rollout runs, observedGeneration.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local ready = nil
local progressing = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Progressing" then
    progressing = condition
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
hs.message = ready.message or ""
if ready.status == "True" then
  if progressing ~= nil and progressing.status == "True" then
    hs.status = "Progressing"
    hs.message = progressing.message or hs.message
  else
    hs.status = "Healthy"
  end
  return hs
end
-- Not ready: some reasons need a person (a wrong spec, one the deployment policy or the
-- region policy refuses, a missing Secret, a rollout that gave up); the others pass once
-- the pods are up.
if ready.reason == "InvalidSpec" or ready.reason == "PolicyViolation" or ready.reason == "SecretNotFound"
    or ready.reason == "RegionNotAllowed" or ready.reason == "ProgressDeadlineExceeded"
    or ready.reason == "ApplyFailed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
