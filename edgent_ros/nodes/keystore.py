"""
SROS2 keystores for a fleet: one enclave per node (``core.security`` names them).

A thin use of the sros2 tooling (``third_party/wheels``), the same calls ``ros2 security
create_keystore`` / ``create_enclave`` make: a CA, the domain's governance (join, discovery,
liveliness and every topic encrypted and access-controlled) and, per enclave, a key, a
certificate and permissions signed by the CA. sros2 imports rclpy, hence this layer.
"""

import os
from pathlib import Path
from typing import List, Optional, Sequence
import warnings

from ..core.security import ENCLAVE_FILES, enclave_dir


def create_fleet_keystore(keystore: Path, enclaves: Sequence[str],
                          domain_id: Optional[int] = None) -> List[str]:
    """
    Create ``keystore`` if absent and every enclave of ``enclaves`` it lacks.

    Governance and permissions are for ``domain_id`` (default: ``$ROS_DOMAIN_ID``, else 0):
    DDS Security binds them to one domain. Returns the enclaves created (an existing one keeps
    its keys: re-running adds, never replaces). Raises ValueError for a path that exists and
    is not a keystore.
    """
    from sros2 import keystore as sros2_keystore   # rclpy behind it

    if domain_id is not None:
        if not 0 <= int(domain_id) <= 232:
            raise ValueError(f'domain_id {domain_id}: expected 0..232')
        old = os.environ.get('ROS_DOMAIN_ID')
        os.environ['ROS_DOMAIN_ID'] = str(int(domain_id))
        try:
            return create_fleet_keystore(keystore, enclaves)
        finally:
            if old is None:
                os.environ.pop('ROS_DOMAIN_ID', None)
            else:
                os.environ['ROS_DOMAIN_ID'] = old

    keystore = Path(keystore)
    if keystore.exists() and not sros2_keystore.is_valid_keystore(keystore):
        if any(keystore.iterdir()):
            raise ValueError(f'{keystore} exists and is not an SROS2 keystore: choose an empty '
                             f'or new directory')
    if not keystore.exists() or not sros2_keystore.is_valid_keystore(keystore):
        sros2_keystore.create_keystore(keystore)
    made = []
    for enclave in enclaves:
        where = enclave_dir(keystore, enclave)
        if all((where / f).exists() for f in ENCLAVE_FILES):
            continue
        with warnings.catch_warnings():
            # sros2 0.15 reads the certificate dates the deprecated (naive) way; harmless
            warnings.filterwarnings('ignore', message='Properties that return a na')
            sros2_keystore.create_enclave(keystore, enclave)
        made.append(enclave)
    return made
