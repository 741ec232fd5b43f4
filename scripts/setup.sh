#!/usr/bin/env bash
# Set up af3-bench in a project virtual environment (.venv), once; later calls return at once
# unless a pyproject or requirements file changed. Safe to run again.
#   AF3_PYTHON      interpreter for the venv (default: python3)
#   AF3_TORCH_SPEC  torch requirement (default torch==2.13.0; e.g. "torch" for the newest CUDA build)
#   AF3_JAX_SPEC    jax requirement (default jax; e.g. "jax[cuda13]" on an NVIDIA machine)
# --engine-env NAME (repeatable) then also makes .venv-NAME: engine NAME with its own declared pins
# (its plugin's `engine` extra, else `run`), af3-bench and the plugin, and registers it as that
# plugin's worker interpreter (af3core/envs.py; `af3 plugins` shows it). For an engine whose pins
# conflict with this environment's (Protenix pins torch 2.7.1); it downloads what the pins name.
#   AF3_ENGINE_TORCH_SPEC  a torch requirement installed there first (default: none; the engine's pins decide)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${AF3_VENV:-$ROOT/.venv}
PY=${AF3_PYTHON:-python3}
TORCH_SPEC=${AF3_TORCH_SPEC:-torch==2.13.0}
JAX_SPEC=${AF3_JAX_SPEC:-jax}
ENGINE_ENVS=()
while (( $# )); do
  case $1 in
    --engine-env)
      [[ $# -ge 2 && -f plugins/af3_$2/pyproject.toml ]] || {
        echo "setup.sh: --engine-env needs a plugin name: $(ls -d plugins/af3_*/ | sed 's#plugins/af3_##; s#/##' | tr '\n' ' ')" >&2; exit 2; }
      ENGINE_ENVS+=("$2"); shift 2 ;;
    *) echo "setup.sh: unknown argument $1 (--engine-env NAME)" >&2; exit 2 ;;
  esac
done

engine_env() {  # name: .venv-NAME with the engine's own pins, registered in the project venv
  local name=$1 env=$ROOT/.venv-$1 extra=run
  grep -q '^engine = ' "plugins/af3_$name/pyproject.toml" && extra=engine
  echo "af3-bench setup: $name's own environment in $env (plugin extra [$extra])" >&2
  [ -x "$env/bin/python" ] || "$PY" -m venv "$env"
  local log=$env/setup.log
  if ! { "$env/bin/python" -m pip --disable-pip-version-check install --quiet --upgrade pip setuptools wheel &&
         { [ -z "${AF3_ENGINE_TORCH_SPEC:-}" ] ||
           "$env/bin/python" -m pip --disable-pip-version-check install --quiet "$AF3_ENGINE_TORCH_SPEC"; } &&
         "$env/bin/python" -m pip --disable-pip-version-check install --quiet -e . -e "plugins/af3_$name[$extra]"; \
       } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "af3-bench setup: $name's environment failed (full log: $log)" >&2
    exit 1
  fi
  "$VENV/bin/python" -m af3core.envs register "$name" "$env/bin/python" >&2
}

stamp_inputs() {
  cat pyproject.toml plugins/*/pyproject.toml scripts/requirements.txt scripts/setup.sh
  echo "$TORCH_SPEC $JAX_SPEC"
}
STAMP="$VENV/.af3-setup-$(stamp_inputs | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then
  for name in "${ENGINE_ENVS[@]}"; do engine_env "$name"; done
  exit 0
fi

echo "af3-bench setup: virtual environment in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
LOG="$VENV/setup.log"
: > "$LOG"
pip_install() {  # pip's chatter goes to the log; its end is shown if it fails
  if ! "$VENV/bin/python" -m pip --disable-pip-version-check install --quiet "$@" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "af3-bench setup: pip install $* failed (full log: $LOG)" >&2
    exit 1
  fi
}
echo "af3-bench setup: installing packages (log: $LOG)" >&2
pip_install --upgrade pip setuptools wheel
# torch first and pinned: later requirements that merely name torch are then already satisfied.
pip_install "$TORCH_SPEC"
pip_install "$JAX_SPEC" -r scripts/requirements.txt
# Boltz-2 from the package index, without its declared pins (docs/BOLTZ.md): the model runs on this
# environment's numpy and scipy; what it imports is in requirements.txt.
pip_install --no-deps "boltz==2.2.1"
# OpenFold3 likewise without its declared dependencies (its data pipeline's; they would downgrade rdkit): docs/OPENFOLD3.md
pip_install --no-deps "openfold3==0.5.0"
# Protenix likewise without its declared pins (torch==2.7.1, numpy==2.4.1, triton==3.3.1...): docs/PROTENIX.md
pip_install --no-deps "protenix==2.0.0"
plugins=(); for dir in plugins/*/; do [ -f "$dir/pyproject.toml" ] && plugins+=(-e "$dir"); done
pip_install --no-build-isolation -e . "${plugins[@]}"

# Engine sources are not on the package index: clone them at the pinned commits when GitHub answers.
clone() {  # dir url commit
  local dir=$1 url=$2 commit=$3
  [ -d "$dir" ] && return 0
  if timeout 20 git ls-remote "$url" HEAD >/dev/null 2>&1; then
    git clone --quiet --filter=blob:none "$url" "$dir" && git -C "$dir" checkout --quiet "$commit" \
      || echo "af3-bench setup: could not clone $url; see README 'Engine sources'" >&2
  else
    echo "af3-bench setup: $url is not reachable; to run that engine, clone it at $commit into $dir" \
         "(or point the plugin's *_SRC variable at a checkout): see README 'Engine sources'" >&2
  fi
}
clone third_party/alphafold3_deepmind https://github.com/google-deepmind/alphafold3 c0f97ed
clone third_party/alphafold3_ligo https://github.com/Ligo-Biosciences/AlphaFold3 621531e
clone third_party/alphafold2 https://github.com/google-deepmind/alphafold c77e5d2

rm -f "$VENV"/.af3-setup-*
touch "$STAMP"
for name in "${ENGINE_ENVS[@]}"; do engine_env "$name"; done
echo "af3-bench setup: done" >&2
