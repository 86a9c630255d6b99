#!/usr/bin/env bash
# Refresh the KServe CustomResourceDefinitions that tests/k8s validates against and installs into
# its live API server (tests/k8s/crds/kserve/), and record where they came from (SOURCE.md).
#
#   hack/refresh-kserve-crds.sh                      # KServe's default ref below, from GitHub
#   KSERVE_REF=v0.21.0 hack/refresh-kserve-crds.sh   # a tag, branch or commit of kserve/kserve
#   hack/refresh-kserve-crds.sh --from DIR           # copy from a folder that holds the files
#   DRY_RUN=1 hack/refresh-kserve-crds.sh            # print what it would do, change nothing
#
# The files are KServe's `config/crd/full/serving.kserve.io_*.yaml`, byte for byte (Apache-2.0).
# After a refresh run `pytest tests/k8s` and commit the folder together with SOURCE.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${DEST:-$ROOT/tests/k8s/crds/kserve}"
KSERVE_REF="${KSERVE_REF:-aaac4e294dae2c7b1aa1886447793f3aa1c30912}"
BASE_URL="${BASE_URL:-https://raw.githubusercontent.com/kserve/kserve}"
DRY_RUN="${DRY_RUN:-0}"
FILES=(
    serving.kserve.io_inferenceservices.yaml
    serving.kserve.io_servingruntimes.yaml
    serving.kserve.io_clusterservingruntimes.yaml
)

FROM=""
while (($#)); do
    case "$1" in
        --from) FROM="${2:?--from needs a folder}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) printf 'unknown argument: %s\n' "$1" >&2; exit 2 ;;
    esac
done

run() {  # print the command; run it unless DRY_RUN=1
    printf '+ %s\n' "$*" >&2
    [[ "$DRY_RUN" == 1 ]] || "$@"
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for f in "${FILES[@]}"; do
    if [[ -n "$FROM" ]]; then
        run cp "$FROM/$f" "$TMP/$f"
    else
        run curl -fsSL --retry 3 -o "$TMP/$f" "$BASE_URL/$KSERVE_REF/config/crd/full/$f"
    fi
    if [[ "$DRY_RUN" != 1 ]]; then
        grep -q '^kind: CustomResourceDefinition' "$TMP/$f" || {
            printf '%s is not a CustomResourceDefinition\n' "$f" >&2
            exit 1
        }
    fi
done
if [[ -n "$FROM" ]]; then
    origin="a local copy (--from) of $BASE_URL/$KSERVE_REF/config/crd/full/"
else
    origin="$BASE_URL/$KSERVE_REF/config/crd/full/"
fi
run mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    run install -m 0644 "$TMP/$f" "$DEST/$f"
done
if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ write %s/SOURCE.md (KServe ref %s)\n' "$DEST" "$KSERVE_REF" >&2
    exit 0
fi
# shellcheck disable=SC2016  # backticks are Markdown here
{
    printf '# KServe CRDs used by tests/k8s\n\n'
    printf 'KServe ref: `%s`\n\n' "$KSERVE_REF"
    printf 'Source: %s\n\n' "$origin"
    printf 'Files: `config/crd/full/` of the kserve/kserve repository, unchanged (Apache License 2.0).\n'
    printf 'Refreshed with `hack/refresh-kserve-crds.sh` on %s.\n' "$(date -u +%Y-%m-%d)"
    if [[ -n "$FROM" && -f "$FROM/../README.md" ]]; then
        printf '\nNote of the folder it was copied from:\n\n'
        sed 's/^/> /' "$FROM/../README.md"
    fi
} >"$DEST/SOURCE.md"
printf 'refreshed %s from %s\n' "$DEST" "${FROM:-$KSERVE_REF}" >&2
