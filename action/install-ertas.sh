#!/usr/bin/env bash
# Installs the `ertas` command for the Ertas.Build action (action.yml's `install` step and action/setup/action.yml).
#
#   ERTAS_VERSION set:   dotnet tool install Ertas.Cli --version "$ERTAS_VERSION" [--add-source "$ERTAS_SOURCE"]
#   ERTAS_VERSION empty: dotnet publish of src/Ertas.Cli from the action's own checkout (the folder above this script,
#                        which is $GITHUB_ACTION_PATH for action.yml), so @v1 runs the ertas of that very commit.
#
# Either way into "$RUNNER_TEMP/ertas-tool"; writes path=<the ertas executable> to $GITHUB_OUTPUT and prints the
# tool's version. Inputs come only from the environment.
set -euo pipefail

action_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tool_dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/ertas-tool"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

if [ -n "${ERTAS_VERSION:-}" ]; then
  args=(tool install Ertas.Cli --version "$ERTAS_VERSION" --tool-path "$tool_dir")
  if [ -n "${ERTAS_SOURCE:-}" ]; then
    args+=(--add-source "$ERTAS_SOURCE")
  fi
  echo "dotnet ${args[*]}"
  dotnet "${args[@]}"
else
  project="$action_root/src/Ertas.Cli/Ertas.Cli.csproj"
  if [ ! -f "$project" ]; then
    echo "::error title=Ertas.Build::$project not found: set the ertas-version input to install Ertas.Cli from a NuGet feed instead"
    exit 1
  fi
  # From the action's folder, so its global.json and Directory.Build.props apply, not the repository's.
  echo "dotnet publish $project -c Release -o $tool_dir"
  (cd "$action_root" && dotnet publish "$project" -c Release -o "$tool_dir" -nologo)
fi

ertas="$tool_dir/ertas"
if [ ! -f "$ertas" ] && [ -f "$ertas.exe" ]; then
  ertas="$ertas.exe"
fi
if [ ! -f "$ertas" ]; then
  echo "::error title=Ertas.Build::no ertas executable in $tool_dir after the install"
  exit 1
fi

version="$("$ertas" --version)"
echo "installed ertas $version at $ertas"
echo "path=$ertas" >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set: this script runs as a step of a GitHub Actions job}"
