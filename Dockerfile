# BGE-M3 embeddings + cross-encoder reranker predictor for KServe.
#
# Build (CUDA-capable torch from PyPI, the default):
#   docker build -t bge-predictor .
# CPU-only torch (much smaller image):
#   docker build --build-arg TORCH_VARIANT=cpu -t bge-predictor:cpu .
# AMD GPUs (PyTorch's ROCm wheels from TORCH_ROCM_INDEX_URL; ROCm devices appear to torch as
# `cuda`, so --device auto/cuda/cuda:N work unchanged):
#   docker build --build-arg TORCH_VARIANT=rocm -t bge-predictor:rocm .
# Bake the default Hugging Face models into the image (needs internet at build time):
#   docker build --build-arg BAKE_MODELS=true -t bge-predictor:baked .
# Build on another Python 3.11 base (e.g. the debootstrap base from hack/build-base-image.sh):
#   docker build --build-arg BASE_IMAGE=bge-predictor-base:bookworm ...
#
# pip is configured only through the standard PIP_* variables, passed as build args
# (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST, PIP_NO_INDEX);
# by default pip uses PyPI. TORCH_CPU_INDEX_URL is the index the CPU torch wheel comes from;
# set it empty to take torch from the PIP_* settings instead (.ci/docker.sh does this, with a
# local wheelhouse).
#
# Run:
#   docker run --rm -p 8080:8080 -p 8081:8081 bge-predictor            # BAAI/bge-m3 + reranker
#   docker run --rm --gpus all -p 8080:8080 bge-predictor --device cuda
#   docker run --rm --device /dev/kfd --device /dev/dri --group-add video \
#       -p 8080:8080 bge-predictor:rocm                                   # every AMD GPU
#   docker run --rm --read-only --tmpfs /tmp --tmpfs /home/app/.cache/huggingface \
#       -v "$PWD/model:/mnt/models:ro" -p 8080:8080 bge-predictor \
#       --embedder /mnt/models --reranker none
# The process runs as uid 1000 (user `app`); models downloaded at start-up go to HF_HOME
# (/home/app/.cache/huggingface), which must be writable (a volume or tmpfs when the root
# filesystem is read-only). With BAKE_MODELS=true the models live in the image's HF_HOME: do not
# mount an empty volume over it, and set HF_HUB_OFFLINE=1 to skip the hub entirely at start-up.

ARG BASE_IMAGE=python:3.11-slim-bookworm

############################################################################################
FROM ${BASE_IMAGE} AS builder

# cuda: PyPI's default Linux torch wheel (CUDA-enabled). cpu: the CPU-only wheel. rocm: the
# ROCm wheel (AMD GPUs), from PyTorch's index for a ROCm release that has the pinned torch (see
# https://pytorch.org/get-started/locally; override TORCH_ROCM_INDEX_URL to match).
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_ROCM_INDEX_URL=https://download.pytorch.org/whl/rocm6.4
# Standard pip settings; unset unless passed with --build-arg.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
ARG PIP_DEFAULT_TIMEOUT=120

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# `python3 -m venv` works on the official python image (/usr/local/bin/python3) and on Debian's
# python3.11 (/usr/bin/python3); with /opt/venv/bin first in PATH, `python` is the venv's.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip setuptools wheel
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./

# 1. torch, per variant (a layer of its own: it is by far the largest and changes least).
RUN set -eux; \
    case "$TORCH_VARIANT" in \
      cpu)  pip install ${TORCH_CPU_INDEX_URL:+--index-url "$TORCH_CPU_INDEX_URL"} \
                -c constraints.txt torch ;; \
      cuda) pip install -c constraints.txt torch ;; \
      rocm) pip install ${TORCH_ROCM_INDEX_URL:+--index-url "$TORCH_ROCM_INDEX_URL"} \
                -c constraints.txt torch ;; \
      *)    echo "TORCH_VARIANT must be cuda, cpu or rocm, not '$TORCH_VARIANT'" >&2; exit 2 ;; \
    esac; \
    python -c 'import sys, torch; v = sys.argv[1]; cuda, hip = torch.version.cuda, \
getattr(torch.version, "hip", None); \
print("torch", torch.__version__, "cuda", cuda, "hip", hip); \
has = {"cpu": not cuda and not hip, "cuda": bool(cuda), "rocm": bool(hip)}[v]; \
sys.exit(f"TORCH_VARIANT={v} but torch {torch.__version__} has CUDA={cuda} HIP={hip}") \
if not has else None' "$TORCH_VARIANT"

# 2. The project's other dependencies, from pyproject.toml (cached until it changes).
COPY pyproject.toml ./
RUN set -eux; \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt; \
    pip install -c constraints.txt -r /tmp/requirements.txt

# 3. The project itself, as a wheel installed in the runtime stage: a code change then leaves
# /opt/venv (and the runtime layer copied from it) cached.
COPY . .
RUN set -eux; \
    pip wheel --no-deps --no-build-isolation --wheel-dir /dist . ; \
    ls -l /dist

############################################################################################
FROM ${BASE_IMAGE} AS runtime

RUN set -eux; \
    groupadd --gid 1000 app; \
    useradd --uid 1000 --gid 1000 --home-dir /home/app --create-home --shell /usr/sbin/nologin app; \
    mkdir -p /home/app/.cache/huggingface; \
    chown -R 1000:1000 /home/app; \
    # World-writable (sticky) like /tmp: a tmpfs mounted over it by `docker run --tmpfs` takes
    # this mode, and the cache stays usable when the container runs under another uid.
    chmod 1777 /home/app/.cache/huggingface /tmp

# jemalloc: the predictor re-executes itself with it preloaded (docs/operations.md, "Memory").
RUN set -eux; \
    if ! ldconfig -p | grep -q 'libjemalloc\.so\.2'; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libjemalloc2; \
        rm -rf /var/lib/apt/lists/*; \
    fi

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /dist/ /tmp/dist/
RUN set -eux; \
    /opt/venv/bin/pip install --no-deps --no-cache-dir --disable-pip-version-check /tmp/dist/*.whl; \
    rm -rf /tmp/dist; \
    /opt/venv/bin/pip check --disable-pip-version-check; \
    /opt/venv/bin/python -c "import predictor"

# HF_HOME is the one writable cache the image needs; `--demo` builds its models under it too.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    BGE_PREDICTOR_CACHE=/home/app/.cache/huggingface/bge-predictor-demo \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 1000:1000
WORKDIR /home/app

ARG BAKE_MODELS=false
ARG BAKE_MODEL_IDS="BAAI/bge-m3 BAAI/bge-reranker-v2-m3"
# Optional: download the default models into HF_HOME at build time (needs internet).
RUN set -eu; \
    case "$BAKE_MODELS" in \
      true|1|yes) \
        for id in $BAKE_MODEL_IDS; do \
          echo "baking $id into $HF_HOME"; \
          python -c "import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))" "$id"; \
        done ;; \
      *) echo "models are not baked in (BAKE_MODELS=$BAKE_MODELS)" ;; \
    esac

EXPOSE 8080 8081

# Labels last, so that changing VERSION/REVISION/CREATED does not invalidate the layers above.
ARG TORCH_VARIANT=cuda
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="bge-predictor" \
      org.opencontainers.image.description="KServe predictor serving BGE-M3 embeddings (dense, sparse, ColBERT) and a cross-encoder reranker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bge-predictor" \
      io.bge-predictor.torch-variant="${TORCH_VARIANT}" \
      io.bge-predictor.baked-models="${BAKE_MODELS}"

ENTRYPOINT ["python", "-m", "predictor"]
