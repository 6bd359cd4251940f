#!/usr/bin/env bash
# The main path of the OCIX image format: a realistic python3 image (mmdebstrap)
# pushed plain to a real docker-registry, converted registry-to-registry by
# `ocix convert`, verified, then pulled and run by STOCK containerd with its
# overlayfs snapshotter (an OCIX image needs no plugin to run).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/registry.sh
. "$INTEGRATION_LIB/registry.sh"
# shellcheck source=SCRIPTDIR/../lib/containerd.sh
. "$INTEGRATION_LIB/containerd.sh"

need_root "containerd, runc and mmdebstrap need root"
need_cmd mmdebstrap umoci skopeo containerd ctr runc jq docker-registry
need_ocix

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"

log "building the python3 image (mmdebstrap --variant=minbase --include=python3)"
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" python3 --include=python3 >/dev/null

registry_start "$TEST_TMP/registry" || fail "registry did not start"
on_exit registry_stop
reg=$REGISTRY_ADDR

log "push the plain image (tar+gzip) to $reg"
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:python3" "docker://$reg/python:plain"

log "convert registry to registry"
"$OCIX" convert -q "$reg/python:plain" "$reg/python:ocix" >digest1
"$OCIX" convert -q "$reg/python:plain" "$reg/python:ocix-again" >digest2
cmp digest1 digest2 || fail "converting twice gave different digests: $(cat digest1) $(cat digest2)"

log "verify"
"$OCIX" verify "$reg/python:ocix" >verify.txt || fail "ocix verify failed: $(cat verify.txt)"

log "the registry serves an OCIX manifest"
curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/python/manifests/ocix" >manifest.json
[[ $(jq -r '.layers[0].mediaType' manifest.json) == application/vnd.oci.image.layer.v1.tar+zstd ]] ||
  fail "layer media type: $(jq -r '.layers[0].mediaType' manifest.json)"
[[ $(jq -r '.layers[0].annotations["containerd.io/snapshot/ocix/toc.digest"]' manifest.json) == sha256:* ]] ||
  fail "no TOC annotation on the layer"

containerd_start "$TEST_TMP/containerd" || fail "containerd did not start"
on_exit containerd_stop

log "stock containerd pulls the OCIX image (overlayfs snapshotter)"
ctrd image pull --plain-http "$reg/python:ocix" >pull.txt || fail "ctr image pull failed: $(tail -n 5 pull.txt)"

log "and runs python3 from it"
out=$(ctrd run --rm "$reg/python:ocix" py1 python3 -c \
  'import json, sys; print(json.dumps({"python": list(sys.version_info[:2]), "ok": True}))')
[[ $out == '{"python": [3, 11], "ok": true}' ]] || fail "unexpected output from the container: $out"
log "container said: $out"

echo "convert_registry_test: PASS"
