"""
rosbag2 files of edgent_ros topics, with the pure-Python ``rosbags`` library (no rclpy here).

Bags are standard rosbag2 (version 9 metadata, mcap or sqlite3 storage, CDR payloads), so
``ros2 bag info/play`` read them on a real install. Our four message types are registered in the
typestore from ``msg/*.msg`` (installed beside the package, or the source tree). Messages are
stored as the serialized CDR bytes rclpy gives a raw subscription, and replayed the same way, so
nothing is converted on the way. ``BagError`` names the bag and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

MSG_NAMES = ('Tensor', 'InferenceResult', 'LinkQuality', 'ExitSplitDecision')


class BagError(ValueError):
    """A bag is missing, truncated, corrupt or holds an unknown type."""


def _msg_dir() -> Path:
    """Return the folder of our ``.msg`` files: the source tree, else the ament install."""
    cand = Path(__file__).resolve().parents[2] / 'msg'
    if (cand / 'Tensor.msg').is_file():
        return cand
    try:
        from ament_index_python.packages import get_package_share_directory
        cand = Path(get_package_share_directory('edgent_ros')) / 'msg'
        if (cand / 'Tensor.msg').is_file():
            return cand
    except Exception:  # noqa: B902 - ament index absent or package not installed
        pass
    raise BagError('cannot find the edgent_ros msg/*.msg definitions to register with rosbags')


def typestore():
    """Return a ROS 2 Kilted typestore with the edgent_ros messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    types: Dict = {}
    d = _msg_dir()
    for name in MSG_NAMES:
        types.update(get_types_from_msg((d / f'{name}.msg').read_text(),
                                        f'edgent_ros/msg/{name}'))
    store.register(types)
    return store


class BagWriter:
    """Write serialized messages of several topics into one rosbag2."""

    def __init__(self, path: Path, storage: str = 'mcap'):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path}: already exists; rosbag2 writes a new folder')
        plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f'storage must be mcap or sqlite3, got {storage!r}')
        self.store = typestore()
        self.writer = Writer(self.path, version=9, storage_plugin=plugin)
        self.writer.open()
        self.connections: Dict[str, object] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare ``topic`` of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype,
                                                                 typestore=self.store)

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Write one CDR-serialized message."""
        self.writer.write(self.connections[topic], int(timestamp_ns), bytes(data))

    def write(self, topic: str, timestamp_ns: int, msg: object) -> None:
        """Serialize a rosbags message object and write it."""
        conn = self.connections[topic]
        self.writer.write(conn, int(timestamp_ns),
                          bytes(self.store.serialize_cdr(msg, conn.msgtype)))

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml)."""
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read(path: Path, topics: Optional[List[str]] = None
         ) -> Iterator[Tuple[str, str, int, bytes]]:
    """Yield ``(topic, msgtype, timestamp_ns, cdr_bytes)`` in time order; BagError if broken."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: bag not found')
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            for conn, ts, data in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, ts, bytes(data)
    except BagError:
        raise
    except Exception as exc:  # rosbags raises several types for truncated/corrupt files
        raise BagError(f'{path}: cannot read bag ({type(exc).__name__}: {exc})') from exc


def deserialize(store, data: bytes, msgtype: str):
    """Return a rosbags message object from CDR bytes (for tests and tools)."""
    try:
        return store.deserialize_cdr(data, msgtype)
    except Exception as exc:  # truncated payloads raise struct/index errors
        raise BagError(f'cannot deserialize a {msgtype} message ({exc})') from exc
