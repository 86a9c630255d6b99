#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster:
#   kind cluster -> predictor image (CPU torch) loaded into it -> demo models copied onto the node
#   -> cert-manager + KServe (Standard, i.e. raw deployment, mode) from their Helm charts ->
#   charts/bge-predictor in each mode (kserve, then standalone; HPA and PDB on, as shipped) ->
#   wait until ready -> `helm test` -> port-forward -> pytest -m e2e tests/e2e -> tear down.
#
#   hack/kind-e2e.sh                 # or: make e2e-kind
#   KEEP_CLUSTER=1 hack/kind-e2e.sh  # leave the cluster running afterwards
#   DRY_RUN=1 hack/kind-e2e.sh       # print the commands it would run; needs none of the tools
#   MODES=standalone hack/kind-e2e.sh
#
# Models: by default small random-weight models shaped like BGE-M3 and bge-reranker-v2-m3
# (predictor.demo, built by the image itself and streamed onto the kind node with `docker cp`, so
# a remote DOCKER_HOST works), served from the node's /models: pvc:// storage URIs in kserve
# mode, a read-only hostPath mount in standalone mode. MODELS=hf serves the real BAAI/bge-m3 and
# BAAI/bge-reranker-v2-m3 instead (downloaded by the pods; ~5 GB, slow on CPU).
#
# Needs: docker, kind, kubectl, helm, python3 (with pytest + httpx, e.g. the repo's .venv), and
# internet access for the kind node image, cert-manager, KServe and (MODELS=hf) the models.
#
# Knobs (environment): CLUSTER_NAME, KIND_NODE_IMAGE, IMAGE, BUILD_IMAGE=0 (reuse an image, e.g.
# IMAGE=bge-predictor:ci from .ci/docker.sh where Docker Hub is out of reach), BASE_IMAGE,
# CERT_MANAGER_VERSION, KSERVE_VERSION, NAMESPACE (prefix: one namespace per mode), RELEASE,
# MODES, MODELS, READY_TIMEOUT, KEEP_CLUSTER, DRY_RUN, PYTHON, PYTEST_ARGS.
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
MODES="${MODES:-kserve standalone}"
MODELS="${MODELS:-demo}"                         # demo | hf
# Longer than the chart's startup allowance (startupProbe 180 x 10 s = 30 minutes).
READY_TIMEOUT="${READY_TIMEOUT:-1900s}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
DRY_RUN="${DRY_RUN:-0}"
PYTEST_ARGS="${PYTEST_ARGS:-}"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# run CMD...: run it, or with DRY_RUN=1 only print it (shell-quoted, one line, on stdout).
run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

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
need helm "Install Helm 3.10+ (OCI charts, --set-json): https://helm.sh/docs/intro/install/"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
need "$PYTHON" "Python 3.11 with pytest and httpx (make install) runs the tests."
if ((${#MISSING[@]})); then
    printf '[kind-e2e] ERROR: missing required tools: %s\n' "${MISSING[*]}" >&2
    [[ "$DRY_RUN" == 1 ]] || exit 127
    log "DRY_RUN=1: printing the commands anyway"
fi
[[ "$MODELS" == demo || "$MODELS" == hf ]] || die "MODELS must be demo or hf, not '$MODELS'"
for mode in $MODES; do
    [[ "$mode" == kserve || "$mode" == standalone ]] || die "MODES: kserve and/or standalone, not '$mode'"
done
if [[ "$DRY_RUN" != 1 ]]; then
    docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
fi

# image_values REF: the chart's image values, one word a line. Only a ':' after the last '/' is
# a tag (host:port/name has none: latest), and name@sha256:... is a digest.
image_values() {
    local ref="$1" repo tag="" digest=""
    if [[ "$ref" == *@* ]]; then
        repo="${ref%%@*}"
        digest="${ref#*@}"
    else
        repo="$ref"
        if [[ "${ref##*/}" == *:* ]]; then
            repo="${ref%:*}"
            tag="${ref##*:}"
        fi
    fi
    printf -- '--set\nimage.repository=%s\n' "$repo"
    if [[ -n "$digest" ]]; then
        printf -- '--set\nimage.digest=%s\n' "$digest"
    else
        printf -- '--set\nimage.tag=%s\n' "${tag:-latest}"
    fi
}

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
    if ((rc != 0)) && ((CLUSTER_CREATED)) && [[ "$DRY_RUN" != 1 ]]; then
        log "failed (exit $rc); cluster state:"
        kubectl get pods -A -o wide 2>&1 | tail -n 40 >&2
        for mode in $MODES; do
            kubectl -n "$NAMESPACE-$mode" get inferenceservices,deployments,hpa,pdb >&2 2>&1
            kubectl -n "$NAMESPACE-$mode" describe inferenceservices 2>&1 | tail -n 60 >&2
            kubectl -n "$NAMESPACE-$mode" logs -l "app.kubernetes.io/instance=$RELEASE" \
                --all-containers --tail=60 --prefix 2>&1 | tail -n 120 >&2
        done
    fi
    if ((CLUSTER_CREATED)) && [[ "$KEEP_CLUSTER" != 1 ]]; then
        log "deleting kind cluster $CLUSTER_NAME"
        run kind delete cluster --name "$CLUSTER_NAME"
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
    run docker build "${build_args[@]}" -t "$IMAGE" "$ROOT"
elif [[ "$DRY_RUN" != 1 ]]; then
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "BUILD_IMAGE=0 but $IMAGE does not exist"
fi

# -------------------------------------------------------------------------------------------
# 2. Cluster. No extra mounts: a host path exists only where the Docker engine runs, which is not
# this machine with a remote DOCKER_HOST; the models are streamed in with `docker cp` below.
printf '%s\n' 'kind: Cluster' 'apiVersion: kind.x-k8s.io/v1alpha4' 'nodes:' \
    '  - role: control-plane' >"$WORK/kind.yaml"
kind_args=(--name "$CLUSTER_NAME" --config "$WORK/kind.yaml" --wait 120s)
[[ -n "$KIND_NODE_IMAGE" ]] && kind_args+=(--image "$KIND_NODE_IMAGE")
if [[ "$DRY_RUN" != 1 ]] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    die "a kind cluster named $CLUSTER_NAME already exists (kind delete cluster --name $CLUSTER_NAME)"
fi
log "creating kind cluster $CLUSTER_NAME"
CLUSTER_CREATED=1
run kind create cluster "${kind_args[@]}"
run kubectl config use-context "kind-$CLUSTER_NAME"
NODE="$CLUSTER_NAME-control-plane"

log "loading $IMAGE into the cluster"
run kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

# -------------------------------------------------------------------------------------------
# 3. Models (demo): built by the image itself (the host needs no torch), then streamed from that
# container to the node's /models as a tar through the Docker API.
if [[ "$MODELS" == demo ]]; then
    log "building demo models and copying them to $NODE:/models"
    builder="bge-e2e-models-$$"
    run docker create --name "$builder" --user 1000:1000 --entrypoint python "$IMAGE" -c \
        'from predictor.demo import build_m3, build_reranker; build_m3("/tmp/models/m3"); build_reranker("/tmp/models/reranker")'
    run docker start --attach "$builder"
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '+ docker cp %q - | docker cp - %q\n' "$builder:/tmp/models" "$NODE:/"
    else
        docker cp "$builder:/tmp/models" - | docker cp - "$NODE:/"
    fi
    run docker rm "$builder"
    run docker exec "$NODE" chmod -R a+rX /models
fi

# -------------------------------------------------------------------------------------------
# 4. cert-manager and KServe (Standard = raw deployment mode: Deployments + Services, no Knative,
# no Istio; ingress creation off since the test port-forwards to the predictor Services).
log "installing cert-manager $CERT_MANAGER_VERSION"
run helm upgrade --install cert-manager oci://quay.io/jetstack/charts/cert-manager \
    --version "$CERT_MANAGER_VERSION" --namespace cert-manager --create-namespace \
    --set crds.enabled=true --wait --timeout 10m

# KServe renamed RawDeployment to Standard in v0.16, and from v0.17 publishes its controller
# chart as kserve-resources beside kserve-crd (v0.16 was the last chart named "kserve").
case "$KSERVE_VERSION" in
    v0.1[0-5].*|v0.[0-9].*) KSERVE_MODE=RawDeployment ;;
    *) KSERVE_MODE=Standard ;;
esac
case "$KSERVE_VERSION" in
    v0.1[0-6].*|v0.[0-9].*) KSERVE_CHART=kserve ;;
    *) KSERVE_CHART=kserve-resources ;;
esac
log "installing KServe $KSERVE_VERSION (kserve-crd + $KSERVE_CHART, deploymentMode=$KSERVE_MODE)"
run helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "$KSERVE_VERSION" --namespace "$KSERVE_NAMESPACE" --create-namespace --wait --timeout 10m
run helm upgrade --install kserve "oci://ghcr.io/kserve/charts/$KSERVE_CHART" \
    --version "$KSERVE_VERSION" --namespace "$KSERVE_NAMESPACE" \
    --set "kserve.controller.deploymentMode=$KSERVE_MODE" \
    --set kserve.controller.gateway.disableIngressCreation=true \
    --wait --timeout 10m
run kubectl -n "$KSERVE_NAMESPACE" rollout status deployment/kserve-controller-manager --timeout 5m

# -------------------------------------------------------------------------------------------
# 5. The predictor chart in each mode: CPU, HPA and PodDisruptionBudget on as shipped.
free_port() {
    if [[ "$DRY_RUN" == 1 ]]; then echo "<port>"; return; fi
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_forward() {  # $1 namespace, $2 service, $3 service port, $4 local port
    if [[ "$DRY_RUN" == 1 ]]; then
        run kubectl -n "$1" port-forward "service/$2" "$4:$3"
        return 0
    fi
    kubectl -n "$1" port-forward "service/$2" "$4:$3" >"$WORK/pf-$2.log" 2>&1 &
    PF_PIDS+=($!)
    local i
    for i in $(seq 60); do
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$4/v2/health/live" >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
        [[ $i == 60 ]] && { cat "$WORK/pf-$2.log" >&2; die "port-forward to $2 did not come up"; }
    done
}

models_pv() {  # $1 mode, $2 namespace: a hostPath PV over the node's /models and its claim
    printf '%s\n' \
        'apiVersion: v1' 'kind: PersistentVolume' 'metadata:' "  name: bge-e2e-models-$1" \
        'spec:' '  capacity:' '    storage: 1Gi' '  accessModes: [ReadOnlyMany]' \
        '  persistentVolumeReclaimPolicy: Retain' '  storageClassName: bge-e2e-models' \
        '  hostPath:' '    path: /models' '    type: Directory' '---' \
        'apiVersion: v1' 'kind: PersistentVolumeClaim' 'metadata:' '  name: bge-models' \
        "  namespace: $2" 'spec:' '  accessModes: [ReadOnlyMany]' \
        '  storageClassName: bge-e2e-models' "  volumeName: bge-e2e-models-$1" \
        '  resources:' '    requests:' '      storage: 1Gi'
}

deploy_and_test() {  # $1 mode
    local mode="$1" ns="$NAMESPACE-$1" component
    local -a chart_args
    mapfile -t chart_args < <(image_values "$IMAGE")
    chart_args+=(
        --namespace "$ns" --create-namespace
        --set "mode=$mode"
        --set fullnameOverride="$RELEASE"
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
            --set "$component.hpa.minReplicas=1"
            --set "$component.hpa.maxReplicas=2"
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
    if [[ "$MODELS" == demo && "$mode" == kserve ]]; then
        # KServe mounts pvc://<claim>/<path> at /mnt/models.
        run kubectl create namespace "$ns"
        models_pv "$mode" "$ns" >"$WORK/models-$mode.yaml"
        run kubectl apply -f "$WORK/models-$mode.yaml"
        chart_args+=(
            --set embedder.storageUri=pvc://bge-models/m3
            --set reranker.storageUri=pvc://bge-models/reranker
        )
    elif [[ "$MODELS" == demo ]]; then
        chart_args+=(
            --set-json 'extraVolumes=[{"name":"models","hostPath":{"path":"/models","type":"Directory"}}]'
            --set-json 'extraVolumeMounts=[{"name":"models","mountPath":"/models","readOnly":true}]'
            --set embedder.model=/models/m3
            --set reranker.model=/models/reranker
        )
    else
        chart_args+=(--set embedder.model=BAAI/bge-m3 --set reranker.model=BAAI/bge-reranker-v2-m3)
    fi
    log "installing charts/bge-predictor (mode $mode, namespace $ns, models: $MODELS)"
    run helm upgrade --install "$RELEASE" "$ROOT/charts/bge-predictor" "${chart_args[@]}" --wait=false

    log "waiting for the $mode workloads (timeout $READY_TIMEOUT)"
    for component in embedder reranker; do
        if [[ "$mode" == kserve ]]; then
            # The object exists once helm returns; Ready needs the model loaded (readiness probe).
            run kubectl -n "$ns" wait --for=condition=Ready "inferenceservice/$RELEASE-$component" \
                --timeout "$READY_TIMEOUT"
        else
            run kubectl -n "$ns" rollout status "deployment/$RELEASE-$component" --timeout "$READY_TIMEOUT"
        fi
    done
    run kubectl -n "$ns" get inferenceservices,deployments,hpa,pdb,pods -o wide

    log "helm test ($mode)"
    run helm test "$RELEASE" --namespace "$ns" --timeout 10m --logs

    local suffix="" port=8080 embedder_port reranker_port
    if [[ "$mode" == kserve ]]; then
        suffix=-predictor
        port=80
    fi
    embedder_port="$(free_port)"
    port_forward "$ns" "$RELEASE-embedder$suffix" "$port" "$embedder_port"
    reranker_port="$(free_port)"
    port_forward "$ns" "$RELEASE-reranker$suffix" "$port" "$reranker_port"

    log "running pytest -m e2e tests/e2e ($mode)"
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
    run env E2E_BASE_URL="http://127.0.0.1:$embedder_port" \
        E2E_RERANKER_BASE_URL="http://127.0.0.1:$reranker_port" \
        E2E_EMBEDDER_NAME=bge-m3 E2E_RERANKER_NAME=bge-reranker \
        "$PYTHON" -m pytest -m e2e "$ROOT/tests/e2e" -v -p no:cacheprovider $PYTEST_ARGS
}

for mode in $MODES; do
    deploy_and_test "$mode"
done
log "e2e passed (modes: $MODES)"
