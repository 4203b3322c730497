#!/usr/bin/env bash
# Build Fast DDS 3.2.2 with DDS Security (-DSECURITY=ON) and rmw_fastrtps 9.3.3 against it:
# the same versions as the Kilted PyPI wheels (ros-fastdds's libfastdds.so.3.2.2, whose
# config.hpp has HAVE_SECURITY 0, and ros-rmw-fastrtps-*-cpp 9.3.3), with the wheels' CMake
# options (Release, BUILD_TESTING=OFF, THIRDPARTY_Asio=FORCE) plus SECURITY=ON.
#
# Why rmw_fastrtps too: HAVE_SECURITY changes the ABI of public Fast DDS types the rmw uses
# (DomainParticipantQos gains a member, DomainParticipantListener a virtual method), and the
# wheel's rmw refuses ROS_SECURITY_ENABLE at compile time ("This Fast DDS version doesn't have
# the security libraries"). Both rmw libraries are rebuilt from the same release tags.
#
# Sources (upstream release repositories, tags):
#   https://github.com/ros2-gbp/fastdds-release        release/kilted/fastdds/3.2.2-1
#   https://github.com/ros2-gbp/rmw_fastrtps-release   release/kilted/rmw_fastrtps_shared_cpp/9.3.3-1
#                                                      release/kilted/rmw_fastrtps_cpp/9.3.3-1
# Deviations (both patched into the copy of the source being built):
# - Fast DDS appends -Werror; Debian 12's GCC 12 reports false-positive maybe-uninitialized
#   warnings in the generated xtypes code (the wheels were built with manylinux's GCC), so
#   -Werror is dropped. The code compiled is unchanged.
# - The sqlite3 amalgamation (src/cpp/rtps/persistence/sqlite3.c, used only by
# PERSISTENT durability, which ROS 2 never asks for) is linked from the system's libsqlite3
# instead of compiled in, so the source tree need not carry the 8 MB file.
#
# Usage: scripts/build_secure_fastdds.sh FASTDDS_SRC RMW_SHARED_SRC RMW_CPP_SRC [JOBS]
#   (run after ./scripts/setup.sh; needs cmake, g++, libssl-dev, libsqlite3-dev)
# Output: third_party/secure_fastdds/secure-fastdds-<ver>-linux-x86_64.tar.xz and its .sha256.
# About 50 min on 2 cores; the artifact is committed so that setup and CI never build it.
set -eo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FASTDDS_SRC=$(realpath "$1"); SHARED_SRC=$(realpath "$2"); CPP_SRC=$(realpath "$3")
JOBS=${4:-$(nproc)}
VENV=$ROOT/.venv
WORK=${SECURE_BUILD_DIR:-$ROOT/build/secure_fastdds}
PREFIX=$WORK/install
NAME=secure-fastdds-3.2.2-rmw-9.3.3-linux-x86_64
[ -x "$VENV/bin/python" ] || { echo "run ./scripts/setup.sh first (needs .venv)" >&2; exit 1; }
grep -q 'project(fastdds VERSION "3.2.2"' "$FASTDDS_SRC/CMakeLists.txt" \
  || { echo "$FASTDDS_SRC is not Fast DDS 3.2.2" >&2; exit 1; }
grep -q '<version>9.3.3</version>' "$SHARED_SRC/package.xml" \
  || { echo "$SHARED_SRC is not rmw_fastrtps_shared_cpp 9.3.3" >&2; exit 1; }
grep -q '<version>9.3.3</version>' "$CPP_SRC/package.xml" \
  || { echo "$CPP_SRC is not rmw_fastrtps_cpp 9.3.3" >&2; exit 1; }
mkdir -p "$WORK"
# the sqlite3 deviation, on a copy of the CMake file
if [ ! -f "$FASTDDS_SRC/src/cpp/rtps/persistence/sqlite3.c" ]; then
  sed -i 's#^    rtps/persistence/sqlite3.c$##' "$FASTDDS_SRC/src/cpp/CMakeLists.txt"
  grep -q 'edgent_ros: system sqlite3' "$FASTDDS_SRC/src/cpp/CMakeLists.txt" || cat >> "$FASTDDS_SRC/src/cpp/CMakeLists.txt" <<'CM'
# edgent_ros: system sqlite3 instead of the amalgamation
if(SQLITE3_SUPPORT)
    target_link_libraries(${PROJECT_NAME} PRIVATE sqlite3)
endif()
CM
fi
sed -i 's#"${CMAKE_CXX_FLAGS} -Werror")#"${CMAKE_CXX_FLAGS}")#' "$FASTDDS_SRC/CMakeLists.txt"
export CMAKE_PREFIX_PATH=$VENV
COMMON=(-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_POLICY_VERSION_MINIMUM=3.5
        -DCMAKE_INSTALL_PREFIX="$PREFIX" -DPython3_EXECUTABLE="$VENV/bin/python")
echo "== Fast DDS 3.2.2 with SECURITY=ON ($JOBS jobs)"
cmake -S "$FASTDDS_SRC" -B "$WORK/fastdds" "${COMMON[@]}" -DSECURITY=ON \
  -DTHIRDPARTY_Asio=FORCE -DTHIRDPARTY_TinyXML2=FORCE -DTHIRDPARTY_UPDATE=OFF -DCOMPILE_TOOLS=OFF \
  -Dfastcdr_DIR="$VENV/lib/cmake/fastcdr" \
  -Dfoonathan_memory_DIR="$VENV/lib/foonathan_memory/cmake" > "$WORK/fastdds.configure.log"
cmake --build "$WORK/fastdds" -j "$JOBS"
cmake --install "$WORK/fastdds" > /dev/null
grep -q '#define HAVE_SECURITY 1' "$PREFIX/include/fastdds/config.hpp"
source "$ROOT/scripts/env.sh" > /dev/null
export CMAKE_PREFIX_PATH=$PREFIX:$CMAKE_PREFIX_PATH
# tracetools exports "lttng-ust" as a link library; the wheels bundle it renamed
# (auditwheel), and the wheels' rmw links that copy: link ours to the same file
SITE=$VENV/lib/python3.11/site-packages
LTTNG=$(ls "$SITE"/ros_rmw_fastrtps_shared_cpp.libs/liblttng-ust-*.so.* | grep -v tracepoint | head -1)
mkdir -p "$WORK/linkstubs"
# every ROS package's headers are in the venv's include/, which also holds the wheel's Fast DDS
# headers (HAVE_SECURITY 0, the other ABI): put the secure build's first, as a plain -I
echo "include_directories(BEFORE \"$PREFIX/include\")" > "$WORK/secure_include_first.cmake"
ln -sfn "$LTTNG" "$WORK/linkstubs/liblttng-ust.so"
for pkg in "$SHARED_SRC" "$CPP_SRC"; do
  n=$(basename "$pkg")
  echo "== $n 9.3.3"
  cmake -S "$pkg" -B "$WORK/$n" "${COMMON[@]}" -Dfastdds_DIR="$PREFIX/share/fastdds/cmake" \
    -DCMAKE_SHARED_LINKER_FLAGS="-L$WORK/linkstubs" \
    -DCMAKE_PROJECT_INCLUDE="$WORK/secure_include_first.cmake" > "$WORK/$n.configure.log"
  cmake --build "$WORK/$n" -j "$JOBS"
  cmake --install "$WORK/$n" > /dev/null
done
# the rmw must have been compiled with security (else it refuses ROS_SECURITY_ENABLE)
if strings "$PREFIX/lib/librmw_fastrtps_shared_cpp.so" | grep -q "have the security libraries"; then
  echo "rmw_fastrtps_shared_cpp was compiled without HAVE_SECURITY" >&2; exit 1
fi
echo "== packing $NAME"
STAGE=$WORK/stage/$NAME
rm -rf "$WORK/stage"; mkdir -p "$STAGE/lib"
cp -P "$PREFIX"/lib/libfastdds.so* "$PREFIX"/lib/librmw_fastrtps_shared_cpp.so \
  "$PREFIX"/lib/librmw_fastrtps_cpp.so "$STAGE/lib/"
strip --strip-unneeded "$STAGE"/lib/*.so*
cp "$0" "$STAGE/BUILD_RECIPE.sh"
OUT=$ROOT/third_party/secure_fastdds
tar -C "$WORK/stage" --owner=0 --group=0 --sort=name --mtime=@0 -cJf "$OUT/$NAME.tar.xz" "$NAME"
(cd "$OUT" && sha256sum "$NAME.tar.xz" > "$NAME.tar.xz.sha256")
ls -la "$OUT"
