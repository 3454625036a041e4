#!/usr/bin/env bash
# Installs kubeinfer on a kind cluster the way a user does, and checks it serves:
#   build the images, create the cluster, load the images, install (helm install the
#   chart, or with KUBEINFER_E2E_INSTALL=kustomize kubectl apply -k of deploy/),
#   run a fake OpenAI in the cluster, apply a built-in CPU endpoint and an OpenAI
#   endpoint pointed at the fake, wait for Ready=True, call both through the gateway
#   with a token bound to kubeinfer-inference-user, delete them and see their objects go.
#
# Needs docker and kind (helm and kubectl come from .venv/bin after `make tools`), and
# network access for base images and the model download. `make e2e` runs it.
# KUBEINFER_E2E_KEEP=1 keeps the cluster; KUBEINFER_E2E_CLUSTER names it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/tests/e2e"
CLUSTER="${KUBEINFER_E2E_CLUSTER:-kubeinfer-e2e}"
CONTEXT="kind-$CLUSTER"
RELEASE_NS=kubeinfer
ENDPOINT_NS=e2e
TIMEOUT="${KUBEINFER_E2E_TIMEOUT:-900s}"
INSTALL="${KUBEINFER_E2E_INSTALL:-helm}"
export PATH="$ROOT/.venv/bin:$PATH"

for tool in docker kind helm kubectl curl; do
  command -v "$tool" >/dev/null || { echo "kind-install: $tool is not on PATH" >&2; exit 2; }
done

log() { printf '\n==> %s\n' "$*"; }
k() { kubectl --context "$CONTEXT" "$@"; }

cleanup() {
  local status=$?
  if [[ -n "${FORWARD_PID:-}" ]]; then kill "$FORWARD_PID" 2>/dev/null || true; fi
  if (( status != 0 )); then
    log "failed: state of the cluster"
    k get inferenceendpoints,deployments,pods -A -o wide || true
    k logs -n "$RELEASE_NS" deployment/kubeinfer-operator --tail=200 || true
    k logs -n "$RELEASE_NS" deployment/kubeinfer-gateway --tail=100 || true
  fi
  if [[ "${KUBEINFER_E2E_KEEP:-}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT

log "building the images"
docker build --target operator -t kubeinfer/kubeinfer:e2e "$ROOT"
docker build --target server -t kubeinfer/kubeinfer-server:e2e "$ROOT"

log "creating the kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image --name "$CLUSTER" kubeinfer/kubeinfer:e2e kubeinfer/kubeinfer-server:e2e

log "installing kubeinfer with $INSTALL"
k create namespace "$ENDPOINT_NS" --dry-run=client -o yaml | k apply -f -
case "$INSTALL" in
  helm)
    helm --kube-context "$CONTEXT" upgrade --install kubeinfer "$ROOT/charts/kubeinfer" \
      --namespace "$RELEASE_NS" --create-namespace -f "$HERE/kind-values.yaml" --wait --timeout 5m
    ;;
  kustomize)
    # The same objects as the Helm install above (a unit test compares the two).
    k apply --server-side -k "$HERE/kustomize"
    k rollout status -n "$RELEASE_NS" deployment/kubeinfer-operator --timeout 5m
    k rollout status -n "$RELEASE_NS" deployment/kubeinfer-gateway --timeout 5m
    ;;
  *) echo "KUBEINFER_E2E_INSTALL must be helm or kustomize, not $INSTALL" >&2; exit 2 ;;
esac
k get crd inferenceendpoints.kubeinfer.io

log "starting the fake OpenAI"
k create configmap fake-openai -n "$ENDPOINT_NS" --from-file=fake_openai.py="$HERE/fake_openai.py" \
  --dry-run=client -o yaml | k apply -f -
k apply -n "$ENDPOINT_NS" -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fake-openai
spec:
  replicas: 1
  selector:
    matchLabels: {app: fake-openai}
  template:
    metadata:
      labels: {app: fake-openai}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: fake-openai
          image: kubeinfer/kubeinfer:e2e
          imagePullPolicy: Never
          command: ["python", "/fake/fake_openai.py"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: code, mountPath: /fake}]
      volumes: [{name: code, configMap: {name: fake-openai}}]
---
apiVersion: v1
kind: Service
metadata:
  name: fake-openai
spec:
  selector: {app: fake-openai}
  ports: [{port: 80, targetPort: 8080}]
YAML
k rollout status -n "$ENDPOINT_NS" deployment/fake-openai --timeout 3m
k create secret generic openai -n "$ENDPOINT_NS" --from-literal=api-key=sk-e2e-test \
  --dry-run=client -o yaml | k apply -f -
# The endpoint sends it to its own url (the fake provider): the Secret's consent.
k label secret openai -n "$ENDPOINT_NS" kubeinfer.io/allow-custom-url=true --overwrite

log "applying the endpoints and waiting for Ready"
k apply -f "$HERE/kind-endpoints.yaml"
k wait -n "$ENDPOINT_NS" inferenceendpoint/openai-fake --for=condition=Ready --timeout "$TIMEOUT"
k wait -n "$ENDPOINT_NS" inferenceendpoint/e5-cpu --for=condition=Ready --timeout "$TIMEOUT"
k get inferenceendpoints -n "$ENDPOINT_NS"

log "calling both through the gateway"
k create serviceaccount inference-client -n "$ENDPOINT_NS" --dry-run=client -o yaml | k apply -f -
k create rolebinding inference-client -n "$ENDPOINT_NS" --clusterrole=kubeinfer-inference-user \
  --serviceaccount="$ENDPOINT_NS:inference-client" --dry-run=client -o yaml | k apply -f -
TOKEN="$(k create token inference-client -n "$ENDPOINT_NS")"
k port-forward -n "$RELEASE_NS" svc/kubeinfer-gateway 19200:9200 >/dev/null &
FORWARD_PID=$!
for _ in $(seq 30); do curl -fsS http://127.0.0.1:19200/healthz >/dev/null 2>&1 && break; sleep 1; done

call() {
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    "http://127.0.0.1:19200/_inference/text_embedding/$1" \
    -d '{"input": ["kubeinfer on kind", "a second sentence"]}'
}
for id in e5-cpu openai-fake; do
  answer="$(call "$id")"
  echo "$id: ${answer:0:160}..."
  python3 - "$answer" <<'PY'
import json, sys
body = json.loads(sys.argv[1])
vectors = body["text_embedding"]
assert len(vectors) == 2 and all(len(v["embedding"]) > 0 for v in vectors), body
PY
done

# Without a token the gateway answers 401, in Elasticsearch's error shape.
status="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  http://127.0.0.1:19200/_inference/text_embedding/e5-cpu -d '{"input": ["x"]}')"
[[ "$status" == 401 ]] || { echo "expected 401 without a token, got $status" >&2; exit 1; }

# The fake provider saw OpenAI's request with the key from the Secret.
received="$(k exec -n "$ENDPOINT_NS" deployment/fake-openai -- python -c \
  'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/received").read().decode())')"
python3 - "$received" <<'PY'
import json, sys
calls = json.loads(sys.argv[1])["received"]
assert calls, "the fake OpenAI received nothing"
last = calls[-1]
assert last["path"] == "/v1/embeddings" and last["authorization"] == "Bearer sk-e2e-test", last
assert last["body"]["model"] == "text-embedding-3-small" and last["body"]["input"], last
PY

log "deleting the endpoints"
k delete -f "$HERE/kind-endpoints.yaml" --wait --timeout 2m
for _ in $(seq 60); do
  left="$(k get deployments -n "$ENDPOINT_NS" -l app.kubernetes.io/managed-by=kubeinfer-operator -o name)"
  [[ -z "$left" ]] && break
  sleep 2
done
[[ -z "$left" ]] || { echo "objects left behind: $left" >&2; exit 1; }

log "kubeinfer installed with $INSTALL on kind serves both endpoint families"
