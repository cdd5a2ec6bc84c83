#!/usr/bin/env bash
# The install a user makes, checked end to end (issue 17), as tests/test_install.py runs it:
#   a fresh venv; torch==2.13.0 first (the CPU wheel: a satisfied torch range installs no other
#   build); `pip install .` of this checkout's files (tracked and untracked-not-ignored, copied to
#   a folder of their own, so that the build fetches the shipped data files as in a fresh clone);
#   then, with the network cut (unshare -n), regulab --version, python -m regulab --version,
#   regulab datasets and a one-epoch regulab train of every built-in that regulab datasets lists,
#   each exiting 0 and writing its run files; video:DIR refused in one line naming the [video]
#   extra. Then a wheel built from the checkout (`pip wheel --no-deps .`, the data files inside)
#   installed in its place with its [video] extra: a built-in trained and the video example run,
#   offline too. Installs use pip's index (PyPI) and cache; the runs download nothing.
#
#   tests/install_check.sh [WORKDIR]      (default: a new temporary folder, removed at the end)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ $# -ge 1 ]; then WORK=$1; mkdir -p "$WORK"; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
WORK=$(cd "$WORK" && pwd)
VENV=$WORK/venv
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
START=$SECONDS

step() { echo "[install_check $((SECONDS - START))s] $*"; }
fail() { echo "install_check: FAILED: $*" >&2; exit 1; }

# Runs with no network: a network namespace of their own, or (where that is not allowed) every
# proxy variable pointing at a closed port, so that any HTTP(S) request fails.
if unshare -n true 2>/dev/null; then OFFLINE=(unshare -n)
elif unshare -rn true 2>/dev/null; then OFFLINE=(unshare -rn)
else OFFLINE=(env http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9
              HTTPS_PROXY=http://127.0.0.1:9 no_proxy= NO_PROXY=)
fi

step "copy the checkout to $WORK/checkout"
mkdir -p "$WORK/checkout"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 cp --parents -t "$WORK/checkout")
[ ! -e "$WORK/checkout/src/regulab/data/shipped_files" ] || fail "the copy holds shipped_files/ (it is not in git)"

step "fresh venv, torch==2.13.0 first"
"$PYTHON" -m venv "$VENV"
"${PIP[@]}" install torch==2.13.0

step "pip install . (its build, setup.py, fetches the data files)"
(cd "$WORK/checkout" && "${PIP[@]}" install .)
[ -s "$WORK/checkout/src/regulab/data/shipped_files/mnist.pkl.gz" ] || fail "the build fetched no data files"
"${PIP[@]}" check
"$VENV/bin/python" -c "import torch; assert torch.__version__ == '2.13.0+cpu', torch.__version__" \
    || fail "installing regulab changed torch"
! "$VENV/bin/python" -c "import cv2" 2>/dev/null || fail "OpenCV is installed without the [video] extra"

RUN=$WORK/run                               # no src/regulab here: the installed package is used
mkdir -p "$RUN"
cd "$RUN"
export REGULAB_CACHE=$WORK/cache REGULAB_DB=sqlite:///$RUN/runs.db
off() { "${OFFLINE[@]}" "$@"; }

step "versions"
[ "$(off "$VENV/bin/regulab" --version)" = "regulab 0.1.0" ] || fail "regulab --version"
[ "$(off "$VENV/bin/python" -m regulab --version)" = "regulab 0.1.0" ] || fail "python -m regulab --version"

off "$VENV/bin/regulab" datasets > datasets.txt
mapfile -t NAMES < <(awk '$1 !~ /:/ {print $1}' datasets.txt)
[ ${#NAMES[@]} -ge 8 ] || fail "regulab datasets lists ${#NAMES[@]} built-ins: $(cat datasets.txt)"

cat > one-epoch.toml <<'EOF'
name = "install-check"
[train]
epochs = 1
seed = 0
EOF
# the generated ones small; late_delivery's 11 rows cannot hold both classes in each split
declare -A KEYS=([mnist1d]=data.n_samples=500 [moons]=data.n_samples=200 [sine]=data.n_samples=100
                 [rotten_tomatoes]=data.n_samples=500 [late_delivery]=data.stratify=false)
for name in "${NAMES[@]}"; do
    step "one epoch of $name"
    sets=(--set "data.dataset=$name")
    [ -n "${KEYS[$name]:-}" ] && sets+=(--set "${KEYS[$name]}")
    off "$VENV/bin/regulab" train one-epoch.toml "${sets[@]}" --out "$name" --quiet > "$name.log" 2>&1 \
        || { cat "$name.log"; fail "regulab train on $name"; }
    for f in config.toml metrics.csv results.json evaluation.json model.safetensors; do
        [ -s "$name/$f" ] || fail "$name: no $f"
    done
    [ "$(wc -l < "$name/metrics.csv")" -eq 2 ] || fail "$name: metrics.csv has not one epoch"
done

step "video:DIR without the [video] extra: one line, exit 2, nothing written"
mkdir -p clips/a clips/b && printf x > clips/a/1.mp4 && printf x > clips/b/1.mp4
set +e
off "$VENV/bin/regulab" train one-epoch.toml --set data.dataset=video:clips --out video --quiet 2> video.err
code=$?
set -e
[ $code -eq 2 ] && [ "$(wc -l < video.err)" -eq 1 ] && grep -q "pip install 'regulab\[video\]'" video.err \
    && [ ! -e video ] || fail "video:DIR without OpenCV: exit $code, $(cat video.err)"

step "a wheel of the checkout, installed in its place with the [video] extra"
(cd "$WORK/checkout" && "${PIP[@]}" wheel --no-deps . -w "$WORK/dist")
WHEEL=$(ls "$WORK"/dist/regulab-*.whl)
"$VENV/bin/python" - "$WHEEL" <<'PY' || fail "the wheel lacks data files of shipped.toml"
import sys, tomllib, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
manifest = tomllib.loads(wheel.read("regulab/data/shipped.toml").decode())
missing = [f["name"] for w in manifest["wheel"] for f in w["file"]
           if f"regulab/data/shipped_files/{f['name']}" not in wheel.namelist()]
sys.exit(f"missing: {missing}" if missing else 0)
PY
"${PIP[@]}" install --force-reinstall --no-deps "$WHEEL"
"${PIP[@]}" install "$WHEEL[video]"
"${PIP[@]}" check
off "$VENV/bin/regulab" train one-epoch.toml --set data.dataset=mnist5k --out wheel-mnist5k --quiet > wheel.log 2>&1 \
    && [ -s wheel-mnist5k/model.safetensors ] || { cat wheel.log; fail "regulab train from the wheel"; }
off "$VENV/bin/python" "$WORK/checkout/examples/video_flow.py" --out video_flow.png > video_flow.log \
    || { cat video_flow.log; fail "examples/video_flow.py"; }
grep -q "motion frames:" video_flow.log && [ -s video_flow.png ] || fail "examples/video_flow.py wrote no figure"
"$VENV/bin/python" -c "import torch; assert torch.__version__ == '2.13.0+cpu', torch.__version__" \
    || fail "installing the extra changed torch"

step "done: ${#NAMES[@]} built-ins (${NAMES[*]}) trained one epoch from a plain install, then the wheel and the video example"
