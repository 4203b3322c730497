# Source me: the venv plus the colcon install of edgent_ros (messages, executables, launch).
_edgent_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
set +u
# shellcheck disable=SC1091
source "$_edgent_root/.venv/bin/activate"
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
# shellcheck disable=SC1091
source "$_edgent_root/.ros/install/setup.bash"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Dev setup: data sets (cifar10/, traces/) in the shared folder beside the checkout, unless the
# user points EDGENT_ROS_DATA elsewhere (README: where outputs and data go).
if [ -z "${EDGENT_ROS_DATA:-}" ] && [ -d "${EDGENT_SHARED_DIR:-$_edgent_root/../shared}/data" ]; then
  EDGENT_ROS_DATA=$(cd "${EDGENT_SHARED_DIR:-$_edgent_root/../shared}/data" && pwd)
  export EDGENT_ROS_DATA
fi
unset _edgent_root
