#!/usr/bin/env bash
# Peak RSS of uploading a 1.9 GB release asset (issue 12): the streamed upload `ertas github release` uses must stay
# under 300 MB whatever the asset's size (Octokit's UploadAsset buffers the whole body; pass --octokit to see it).
# A child process uploads a sparse file to a loopback sink that reads and discards the body, and reports its VmHWM.
#
#   bench/release-upload.sh [--bytes N] [--dir DIR] [--octokit]
set -euo pipefail
cd "$(dirname "$0")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
target_mb=300

dotnet build bench/Ertas.Bench.ReleaseUpload -c Release -v quiet -nologo >/dev/null
out="$(dotnet bench/Ertas.Bench.ReleaseUpload/bin/Release/net10.0/Ertas.Bench.ReleaseUpload.dll "$@")"
echo "$out"

# The streamed 1.9 GB row's last column is its peak RSS in MB.
peak="$(echo "$out" | awk -F'|' '/^\| streamed \(ReleaseAssetTransfer\) \|/ { gsub(/ /, "", $6); print $6 }')"
if [ -z "$peak" ]; then
  echo "error: no streamed upload result" >&2
  exit 1
fi
if [ "$peak" -ge "$target_mb" ]; then
  echo "FAIL: streamed upload peak RSS ${peak} MB is not under ${target_mb} MB" >&2
  exit 1
fi
echo "OK: streamed upload peak RSS ${peak} MB, under ${target_mb} MB"
