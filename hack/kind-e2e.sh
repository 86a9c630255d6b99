#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster:
#   kind cluster -> predictor image (CPU torch) loaded into it -> cert-manager + KServe (Standard,
#   i.e. raw deployment, mode) from their Helm charts -> charts/bge-predictor in mode=kserve ->
#   wait for both InferenceServices -> port-forward -> pytest -m e2e tests/e2e -> tear down.
#
#   hack/kind-e2e.sh                 # or: make e2e-kind
#   KEEP_CLUSTER=1 hack/kind-e2e.sh  # leave the cluster running afterwards
#
# Models: by default small random-weight models shaped like BGE-M3 and bge-reranker-v2-m3
# (predictor.demo, built with the image itself), handed to KServe as pvc:// storage URIs on a
# hostPath volume: no Hugging Face download, a few seconds to load. MODELS=hf serves the real
# BAAI/bge-m3 and BAAI/bge-reranker-v2-m3 instead (downloaded by the pods; ~5 GB, slow on CPU).
#
# Needs: docker, kind, kubectl, helm, python3 (with pytest + httpx, e.g. the repo's .venv), and
# internet access for the kind node image, cert-manager, KServe and (MODELS=hf) the models.
#
# Knobs (environment): CLUSTER_NAME, KIND_NODE_IMAGE, IMAGE, BUILD_IMAGE=0 (reuse an image, e.g.
# IMAGE=bge-predictor:ci from .ci/docker.sh where Docker Hub is out of reach), BASE_IMAGE,
# CERT_MANAGER_VERSION, KSERVE_VERSION, NAMESPACE, RELEASE, MODELS, READY_TIMEOUT, KEEP_CLUSTER,
# PYTHON, PYTEST_ARGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

CLUSTER_NAME="${CLUSTER_NAME:-bge-e2e}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"            # empty: kind's default node image
IMAGE="${IMAGE:-bge-predictor:e2e}"
BUILD_IMAGE="${BUILD_IMAGE:-1}"                  # 0: use an already built $IMAGE
BASE_IMAGE="${BASE_IMAGE:-}"                     # empty: the Dockerfile's default base
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.18.2}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.17.1}"
KSERVE_NAMESPACE="${KSERVE_NAMESPACE:-kserve}"
NAMESPACE="${NAMESPACE:-bge}"
RELEASE="${RELEASE:-bge}"
MODELS="${MODELS:-demo}"                         # demo | hf
READY_TIMEOUT="${READY_TIMEOUT:-900s}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
PYTEST_ARGS="${PYTEST_ARGS:-}"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# need TOOL HINT...: remember a missing tool; all of them are reported together below.
MISSING=()
need() {
    local tool="$1"
    shift
    if ! command -v "$tool" >/dev/null 2>&1; then
        printf '[kind-e2e] ERROR: required tool "%s" not found in PATH. %s\n' "$tool" "$*" >&2
        MISSING+=("$tool")
    fi
}
need docker "Install Docker: https://docs.docker.com/engine/install/ (or run .ci/docker.sh as root)."
need kind "Install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "Install kubectl: https://kubernetes.io/docs/tasks/tools/"
need helm "Install Helm 3.8+ (OCI charts): https://helm.sh/docs/intro/install/"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
need "$PYTHON" "Python 3.11 with pytest and httpx (make install) runs the tests."
if ((${#MISSING[@]})); then
    printf '[kind-e2e] ERROR: missing required tools: %s\n' "${MISSING[*]}" >&2
    exit 127
fi
[[ "$MODELS" == demo || "$MODELS" == hf ]] || die "MODELS must be demo or hf, not '$MODELS'"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bge-kind-e2e.XXXXXX")"
PF_PIDS=()
CLUSTER_CREATED=0
cleanup() {
    local rc=$?
    set +e
    for pid in "${PF_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if ((rc != 0)) && ((CLUSTER_CREATED)); then
        log "failed (exit $rc); cluster state:"
        kubectl get pods -A -o wide 2>&1 | tail -n 40 >&2
        kubectl -n "$NAMESPACE" get inferenceservices >&2 2>&1
        kubectl -n "$NAMESPACE" describe inferenceservices 2>&1 | tail -n 60 >&2
        kubectl -n "$NAMESPACE" logs -l "app.kubernetes.io/instance=$RELEASE" --all-containers \
            --tail=60 --prefix 2>&1 | tail -n 120 >&2
    fi
    if ((CLUSTER_CREATED)) && [[ "$KEEP_CLUSTER" != 1 ]]; then
        log "deleting kind cluster $CLUSTER_NAME"
        kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1
    elif ((CLUSTER_CREATED)); then
        log "KEEP_CLUSTER=1: cluster $CLUSTER_NAME left running (kind delete cluster --name $CLUSTER_NAME)"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------------------------------------
# 1. Image.
if [[ "$BUILD_IMAGE" == 1 ]]; then
    log "building $IMAGE (TORCH_VARIANT=cpu)"
    build_args=(--build-arg TORCH_VARIANT=cpu)
    [[ -n "$BASE_IMAGE" ]] && build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    docker build "${build_args[@]}" -t "$IMAGE" "$ROOT"
else
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "BUILD_IMAGE=0 but $IMAGE does not exist"
fi

# -------------------------------------------------------------------------------------------
# 2. Models (demo): built by the image itself, so the host needs no torch.
MODEL_DIR="$WORK/models"
mkdir -p "$MODEL_DIR"
if [[ "$MODELS" == demo ]]; then
    log "building demo models in $MODEL_DIR"
    chmod 0777 "$MODEL_DIR"
    docker run --rm --user 1000:1000 --entrypoint python -v "$MODEL_DIR:/out" "$IMAGE" -c \
        'from predictor.demo import build_m3, build_reranker; build_m3("/out/m3"); build_reranker("/out/reranker")'
    chmod -R a+rX "$MODEL_DIR"
fi

# -------------------------------------------------------------------------------------------
# 3. Cluster.
cat >"$WORK/kind.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: $MODEL_DIR
        containerPath: /models
        readOnly: true
EOF
kind_args=(--name "$CLUSTER_NAME" --config "$WORK/kind.yaml" --wait 120s)
[[ -n "$KIND_NODE_IMAGE" ]] && kind_args+=(--image "$KIND_NODE_IMAGE")
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    die "a kind cluster named $CLUSTER_NAME already exists (kind delete cluster --name $CLUSTER_NAME)"
fi
log "creating kind cluster $CLUSTER_NAME"
CLUSTER_CREATED=1
kind create cluster "${kind_args[@]}"
KUBE_CONTEXT="kind-$CLUSTER_NAME"
kubectl config use-context "$KUBE_CONTEXT" >/dev/null

log "loading $IMAGE into the cluster"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

# -------------------------------------------------------------------------------------------
# 4. cert-manager and KServe (Standard = raw deployment mode: Deployments + Services, no Knative,
# no Istio; ingress creation off since the test port-forwards to the predictor Services).
log "installing cert-manager $CERT_MANAGER_VERSION"
helm upgrade --install cert-manager oci://quay.io/jetstack/charts/cert-manager \
    --version "$CERT_MANAGER_VERSION" --namespace cert-manager --create-namespace \
    --set crds.enabled=true --wait --timeout 10m

# KServe renamed RawDeployment to Standard in v0.16.
case "$KSERVE_VERSION" in
    v0.1[0-5].*|v0.[0-9].*) KSERVE_MODE=RawDeployment ;;
    *) KSERVE_MODE=Standard ;;
esac
log "installing KServe $KSERVE_VERSION (deploymentMode=$KSERVE_MODE)"
helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "$KSERVE_VERSION" --namespace "$KSERVE_NAMESPACE" --create-namespace --wait --timeout 10m
helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
    --version "$KSERVE_VERSION" --namespace "$KSERVE_NAMESPACE" \
    --set "kserve.controller.deploymentMode=$KSERVE_MODE" \
    --set kserve.controller.gateway.disableIngressCreation=true \
    --wait --timeout 10m
kubectl -n "$KSERVE_NAMESPACE" rollout status deployment/kserve-controller-manager --timeout 5m

# -------------------------------------------------------------------------------------------
# 5. The predictor chart, mode=kserve, CPU.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
chart_args=(
    --namespace "$NAMESPACE"
    --set mode=kserve
    --set fullnameOverride="$RELEASE"
    --set image.repository="${IMAGE%:*}"
    --set image.tag="${IMAGE##*:}"
    --set image.pullPolicy=IfNotPresent
    --set kserve.deploymentMode="$KSERVE_MODE"
    --set gpu.enabled=false
    --set modelCache.sizeLimit=8Gi
    --set tmpVolume.sizeLimit=512Mi
    --set shm.sizeLimit=256Mi
)
for component in embedder reranker; do
    chart_args+=(
        --set "$component.device=cpu"
        --set "$component.useFp16=false"
        --set "$component.replicas=1"
        --set "$component.hpa.enabled=false"
        --set "$component.pdb.enabled=false"
        --set "$component.resources.requests.cpu=100m"
        --set "$component.resources.requests.memory=256Mi"
        --set "$component.resources.limits.cpu=2"
    )
    if [[ "$MODELS" == demo ]]; then
        chart_args+=(--set "$component.resources.limits.memory=2Gi")
    else
        chart_args+=(--set "$component.resources.limits.memory=6Gi")
    fi
done
if [[ "$MODELS" == demo ]]; then
    # A hostPath PersistentVolume over the node's /models (the kind extraMount), bound to one PVC;
    # KServe mounts pvc://<claim>/<path> at /mnt/models.
    kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: bge-e2e-models
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: bge-e2e-models
  hostPath:
    path: /models
    type: Directory
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: bge-models
  namespace: $NAMESPACE
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: bge-e2e-models
  volumeName: bge-e2e-models
  resources:
    requests:
      storage: 1Gi
EOF
    chart_args+=(
        --set embedder.storageUri=pvc://bge-models/m3
        --set reranker.storageUri=pvc://bge-models/reranker
    )
else
    chart_args+=(--set embedder.model=BAAI/bge-m3 --set reranker.model=BAAI/bge-reranker-v2-m3)
fi
log "installing charts/bge-predictor (release $RELEASE, models: $MODELS)"
helm upgrade --install "$RELEASE" "$ROOT/charts/bge-predictor" "${chart_args[@]}" --wait=false

EMBEDDER_ISVC="$RELEASE-embedder"
RERANKER_ISVC="$RELEASE-reranker"
log "waiting for InferenceServices $EMBEDDER_ISVC and $RERANKER_ISVC (timeout $READY_TIMEOUT)"
for isvc in "$EMBEDDER_ISVC" "$RERANKER_ISVC"; do
    # The object exists as soon as helm returns; Ready needs the model loaded (readiness probe).
    kubectl -n "$NAMESPACE" wait --for=condition=Ready "inferenceservice/$isvc" --timeout "$READY_TIMEOUT"
done
kubectl -n "$NAMESPACE" get inferenceservices,pods -o wide

# -------------------------------------------------------------------------------------------
# 6. Port-forward to the predictor Services KServe created and run the live tests.
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_forward() {  # $1 service, $2 local port
    kubectl -n "$NAMESPACE" port-forward "service/$1" "$2:80" >"$WORK/pf-$1.log" 2>&1 &
    PF_PIDS+=($!)
    local i
    for i in $(seq 60); do
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$2/v2/health/live" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
        [[ $i == 60 ]] && { cat "$WORK/pf-$1.log" >&2; die "port-forward to $1 did not come up"; }
    done
}
EMBEDDER_PORT="$(free_port)"
port_forward "$EMBEDDER_ISVC-predictor" "$EMBEDDER_PORT"
RERANKER_PORT="$(free_port)"
port_forward "$RERANKER_ISVC-predictor" "$RERANKER_PORT"

values_json="$(helm -n "$NAMESPACE" get values "$RELEASE" --all -o json)"
served_name() {  # $1 component
    "$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]]["name"])' "$values_json" "$1"
}
EMBEDDER_NAME="$(served_name embedder)"
RERANKER_NAME="$(served_name reranker)"

log "running pytest -m e2e tests/e2e"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
E2E_BASE_URL="http://127.0.0.1:$EMBEDDER_PORT" \
E2E_RERANKER_BASE_URL="http://127.0.0.1:$RERANKER_PORT" \
E2E_EMBEDDER_NAME="$EMBEDDER_NAME" \
E2E_RERANKER_NAME="$RERANKER_NAME" \
    "$PYTHON" -m pytest -m e2e "$ROOT/tests/e2e" -v -p no:cacheprovider $PYTEST_ARGS

log "e2e passed"
