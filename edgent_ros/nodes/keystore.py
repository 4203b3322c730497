"""
SROS2 keystores for a fleet: one enclave per node (``core.security`` names them).

A thin use of the sros2 tooling (``third_party/wheels``), the same calls ``ros2 security
create_keystore`` / ``create_enclave`` make: a CA, the domain's governance (join, discovery,
liveliness and every topic encrypted and access-controlled) and, per enclave, a key, a
certificate and permissions signed by the CA. sros2 imports rclpy, hence this layer.

Given ``grants`` (``core.security.fleet_grants``), each of those enclaves gets least-privilege
permissions from that policy (written beside the keystore's ``enclaves/`` as
``edgent_policy.xml``, readable by ``ros2 security create_permission``); every other enclave
keeps sros2's default permissions (every topic of the domain).
"""

import os
from pathlib import Path
from typing import List, Mapping, Optional, Sequence
import warnings

from ..core.security import ENCLAVE_FILES, enclave_dir, Grant, policy_xml

POLICY_FILE = 'edgent_policy.xml'


def create_fleet_keystore(keystore: Path, enclaves: Sequence[str],
                          domain_id: Optional[int] = None,
                          grants: Optional[Mapping[str, Grant]] = None) -> List[str]:
    """
    Create ``keystore`` if absent and every enclave of ``enclaves`` it lacks.

    Governance and permissions are for ``domain_id`` (default: ``$ROS_DOMAIN_ID``, else 0):
    DDS Security binds them to one domain. Returns the enclaves created (an existing one keeps
    its keys: re-running adds, never replaces). The permissions of every enclave in ``grants``
    are (re)written from them each run, so an edge's list of robots follows the fleet given.
    Raises ValueError for a path that exists and is not a keystore.
    """
    from sros2 import keystore as sros2_keystore   # rclpy behind it

    if domain_id is not None:
        if not 0 <= int(domain_id) <= 232:
            raise ValueError(f'domain_id {domain_id}: expected 0..232')
        old = os.environ.get('ROS_DOMAIN_ID')
        os.environ['ROS_DOMAIN_ID'] = str(int(domain_id))
        try:
            return create_fleet_keystore(keystore, enclaves, grants=grants)
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
    if grants:
        _write_permissions(keystore, [e for e in enclaves if e in grants], grants)
    return made


def _write_permissions(keystore: Path, enclaves: Sequence[str],
                       grants: Mapping[str, Grant]) -> None:
    """Write ``grants`` as the keystore's policy file and sign each enclave's permissions."""
    from sros2.api import _policy
    from sros2.keystore import _permission

    path = keystore / POLICY_FILE
    path.write_text(policy_xml(grants))
    for enclave in enclaves:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Properties that return a na')
            _permission.create_permissions_from_policy_element(
                keystore, enclave, _policy.get_policy(enclave, path))
