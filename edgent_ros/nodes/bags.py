"""
rosbag2 files of edgent_ros topics, with the pure-Python ``rosbags`` library (no rclpy here).

Bags are standard rosbag2 (version 9 metadata, mcap or sqlite3 storage, CDR payloads), so
``ros2 bag info/play`` read them on a real install. Our four message types are registered in the
typestore from ``msg/*.msg`` (installed beside the package, or the source tree). Messages are
stored as the serialized CDR bytes rclpy gives a raw subscription, and replayed the same way, so
nothing is converted on the way. ``BagError`` names the bag and the problem.

Each topic carries the QoS its publishers offered (rosbag2's ``offered_qos_profiles``), and the
two rules ``ros2 bag`` applies to them live here (rosbag2_transport ``qos.cpp``): what a recorder
requests from the offers it sees, and what a player offers from the recorded ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

MSG_NAMES = ('Tensor', 'InferenceResult', 'LinkQuality', 'ExitSplitDecision')

# rmw policy values (rclpy's and rosbags' enums use the same numbers)
RELIABLE, BEST_EFFORT = 1, 2
TRANSIENT_LOCAL, VOLATILE = 1, 2
# rosbag2 plays a topic with keep-last 10 when it replays a recorded offer (history is not part
# of DDS discovery, so the recorded offer has none)
PLAY_DEPTH = 10


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

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence = ()) -> None:
        """
        Declare ``topic`` of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``).

        ``offered_qos``: the QoS of each publisher seen on the topic (rosbags ``Qos``, see
        ``qos_from_rmw``), stored as rosbag2's ``offered_qos_profiles`` so a player (ours or
        ``ros2 bag play``) offers what the original publishers did.
        """
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=list(offered_qos))

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
            check_definitions(path, conns)
            if not conns:
                return   # rosbags reads every connection when given none
            for conn, ts, data in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, ts, bytes(data)
    except BagError:
        raise
    except Exception as exc:  # rosbags raises several types for truncated/corrupt files
        raise BagError(f'{path}: cannot read bag ({type(exc).__name__}: {exc})') from exc


def check_definitions(path: Path, connections: Sequence, store=None) -> None:
    """
    Raise ``BagError`` when a connection's ``edgent_ros`` type differs from our ``msg/*.msg``.

    A bag stores each type's definition beside its messages. Ours changed (e.g. ``Tensor``
    gained ``robot`` and ``probe``; ``encoding`` became a string): bytes written with an older
    layout would deserialize into garbage or fail somewhere deep, so such a bag is refused up
    front, naming the type and the fields that differ. Bags without a stored definition pass.
    """
    from rosbags.typesys import get_types_from_msg
    ours = None
    for conn in connections:
        if not conn.msgtype.startswith('edgent_ros/'):
            continue
        text = getattr(conn.msgdef, 'data', '') or ''
        if not text:
            continue
        ours = ours or (store or typestore()).fielddefs
        try:
            theirs = get_types_from_msg(text, conn.msgtype)[conn.msgtype][1]
        except Exception as exc:  # an unparsable definition is as unusable as a different one
            raise BagError(f'{path}: topic {conn.topic}: unreadable {conn.msgtype} definition '
                           f'({exc})') from exc
        mine = ours.get(conn.msgtype, (None, None))[1]
        if mine is None:
            raise BagError(f'{path}: topic {conn.topic}: {conn.msgtype} is not a type of this '
                           'edgent_ros (recorded with another version?)')
        if list(theirs) != list(mine):
            old = [f[0] for f in theirs]
            new = [f[0] for f in mine]
            diff = sorted(set(old) ^ set(new)) or ['field types or order']
            raise BagError(f'{path}: topic {conn.topic} was recorded with another definition of '
                           f'{conn.msgtype} (differs in: {", ".join(diff)}): a bag from an older '
                           'edgent_ros cannot be replayed; record it again with this version')


def offered_qos(path: Path) -> Dict[str, List]:
    """Return ``{topic: [rosbags Qos, ...]}``: the publishers' QoS recorded per topic."""
    from rosbags.rosbag2 import Reader
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: bag not found')
    try:
        with Reader(path) as reader:
            out: Dict[str, List] = {}
            for conn in reader.connections:
                out.setdefault(conn.topic, []).extend(
                    getattr(conn.ext, 'offered_qos_profiles', None) or [])
            return out
    except Exception as exc:  # rosbags raises several types for truncated/corrupt files
        raise BagError(f'{path}: cannot read bag ({type(exc).__name__}: {exc})') from exc


def qos_from_rmw(history: int, depth: int, reliability: int, durability: int, deadline_ns: int,
                 lifespan_ns: int, liveliness: int, lease_ns: int, avoid_ros_namespace: bool):
    """
    Return a rosbags ``Qos`` from rmw policy numbers and durations in ns.

    The numbers are rmw's (rclpy's ``QoSProfile`` enums have the same values); a value rosbags does
    not know becomes UNKNOWN. Durations are split like rosbag2 writes them (infinite, 2**63 - 1
    ns, is sec 9223372036, nsec 854775807).
    """
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    def enum(cls, value):
        try:
            return cls(int(value))
        except ValueError:
            return cls.UNKNOWN

    def dur(ns):
        sec, nsec = divmod(max(0, int(ns)), 10**9)
        return QosTime(sec, nsec)
    return Qos(enum(QosHistory, history), int(depth), enum(QosReliability, reliability),
               enum(QosDurability, durability), dur(deadline_ns), dur(lifespan_ns),
               enum(QosLiveliness, liveliness), dur(lease_ns), bool(avoid_ros_namespace))


class Request(NamedTuple):
    """What a recorder subscribes with: ``reliable`` and ``transient_local`` (else volatile)."""

    reliable: bool
    transient_local: bool


def request_for_offers(offers: Sequence) -> Request:
    """
    Return the QoS a recorder requests from the publishers' ``offers`` (rosbags ``Qos``).

    rosbag2's ``adapt_request_to_offers``: reliable only if every publisher is reliable (a
    reliable reader never matches a best-effort writer, e.g. a camera driver), transient local
    only if every publisher is (then their latched history is recorded too); no offers: rosbag2's
    default, reliable and volatile.
    """
    if not offers:
        return Request(True, False)
    return Request(all(q.reliability.value == RELIABLE for q in offers),
                   all(q.durability.value == TRANSIENT_LOCAL for q in offers))


def misses(request: Request, offers: Sequence) -> List:
    """Return the ``offers`` a subscription with ``request`` does not match."""
    return [q for q in offers
            if (request.reliable and q.reliability.value != RELIABLE)
            or (request.transient_local and q.durability.value != TRANSIENT_LOCAL)]


def offer_from_recorded(offers: Sequence):
    """
    Return the rosbags ``Qos`` to publish a topic with on replay, or None for the caller's default.

    rosbag2's ``adapt_offer_to_recorded_offers``: when every recorded publisher offered the same
    policies that decide matching (reliability, durability, deadline, liveliness and its lease),
    offer that, with keep-last ``PLAY_DEPTH``; none recorded, or a mix: None.
    """
    if not offers:
        return None
    key = [(q.reliability, q.durability, q.deadline, q.liveliness, q.liveliness_lease_duration)
           for q in offers]
    if any(k != key[0] for k in key[1:]):
        return None
    from rosbags.interfaces import QosHistory
    return offers[0]._replace(history=QosHistory.KEEP_LAST, depth=PLAY_DEPTH)


def deserialize(store, data: bytes, msgtype: str):
    """Return a rosbags message object from CDR bytes (for tests and tools)."""
    try:
        return store.deserialize_cdr(data, msgtype)
    except Exception as exc:  # truncated payloads raise struct/index errors
        raise BagError(f'cannot deserialize a {msgtype} message ({exc})') from exc
