"""
Plan a described model without torch: its layer table, measured block times and exit accuracy.

Three JSON artifacts beside a model description (``core.model_desc``), all tied to its model id:

- the **table** (``core.described.model_table``, written by ``edgent-ros import``): per exit,
  each layer's output shape and bytes;
- the **block latencies** (``edgent-ros profile --model``, ``LATENCY_FORMAT``): per host, the
  measured median ms of every trunk block and side head at batch 1 (direct measurement of the
  deployed model, the alternative the Edgent paper's per-kind regression approximates);
- the **accuracy** (``edgent-ros train-exits``, ``ACCURACY_FORMAT``): top-1 per exit.

``problem_for`` turns them into an ``EdgentProblem``: split 0 sends the uint8 RGB frame at the
model's input size, a cut sends its fp32 tensor (``bytes_per_element`` 1 for int8), the last
split sends nothing. When ``edgent-ros train-bottleneck --model`` has added an ``encodings``
section to the accuracy (the JPEG frame, learned bottlenecks ``bn<c>``), those become
encoded variants the planner may choose, as for the shipped AlexNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .artifacts import ArtifactError, EncodingCost, encodings_of, load_json, save_json
from .link import MESSAGE_OVERHEAD_BYTES
from .optimizer import DEFAULT_OVERHEAD_MS, EdgentProblem, encoding_variants, scale_robot

TABLE_FORMAT = 'edgent_ros/model_table/1'
LATENCY_FORMAT = 'edgent_ros/model_latency/1'
ACCURACY_FORMAT = 'edgent_ros/model_accuracy/1'
HOSTS = ('robot', 'edge')


def load_table(path: Path, model_id: Optional[str] = None) -> Dict[str, Any]:
    """Read a model table (checked format and checksum, and model id when given)."""
    return _checked(load_json(Path(path), TABLE_FORMAT), path, model_id)


def load_block_latency(path: Path, model_id: Optional[str] = None) -> Dict[str, Any]:
    """Read measured block latencies (``{hosts: {host: {trunk: [ms], heads: [ms]}}}``)."""
    return _checked(load_json(Path(path), LATENCY_FORMAT), path, model_id)


def load_model_accuracy(path: Path, model_id: Optional[str] = None) -> Dict[int, float]:
    """Read ``{exit: top1}`` of a described model."""
    body = _checked(load_json(Path(path), ACCURACY_FORMAT), path, model_id)
    try:
        return {int(r['exit']): float(r['top1']) for r in body['exits']}
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f'{path}: exits must be a list of {{exit, top1}} ({exc})') from exc


def load_model_encodings(path: Path, model_id: Optional[str] = None
                         ) -> Dict[Tuple[int, int, str], EncodingCost]:
    """Read ``{(exit, split, encoding): cost}`` of a described model (frames, bottlenecks)."""
    return encodings_of(_checked(load_json(Path(path), ACCURACY_FORMAT), path, model_id), path)


def _checked(body: Dict[str, Any], path: Any, model_id: Optional[str]) -> Dict[str, Any]:
    if model_id is not None and body.get('model_id') != model_id:
        raise ArtifactError(f'{path}: belongs to model {body.get("model_id")!r}, not '
                            f'{model_id!r}')
    return body


def save_block_latency(path: Path, model_id: str, host: str, trunk_ms: List[float],
                       heads_ms: List[float], info: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge one host's block times into the latency file (other hosts are kept)."""
    if host not in HOSTS:
        raise ValueError(f'host must be one of {HOSTS}, got {host!r}')
    body: Dict[str, Any] = {'model_id': model_id, 'hosts': {}}
    if Path(path).is_file():
        old = load_json(Path(path), LATENCY_FORMAT)
        if old.get('model_id') == model_id:
            body['hosts'] = dict(old.get('hosts', {}))
    body['hosts'][host] = {'trunk_ms': [float(v) for v in trunk_ms],
                           'heads_ms': [float(v) for v in heads_ms], 'info': dict(info)}
    save_json(body, Path(path), LATENCY_FORMAT)
    return body


def branch_ms(table: Mapping[str, Any], latency: Mapping[str, Any], host: str
              ) -> Dict[int, List[float]]:
    """Per exit, the measured ms of each layer of its branch on ``host``."""
    hosts = latency.get('hosts', {})
    if host not in hosts:
        raise ArtifactError(f'no block times for host {host!r} (have: '
                            f'{", ".join(sorted(hosts)) or "none"}): edgent-ros profile '
                            f'--model ... --host {host}')
    trunk = hosts[host]['trunk_ms']
    heads = hosts[host]['heads_ms']
    out: Dict[int, List[float]] = {}
    side = [x for x in table['exits'] if x['attach'] is not None]
    for x in table['exits']:
        e = int(x['exit'])
        if x['attach'] is None:
            row = list(trunk)
        else:
            k = side.index(x)
            if k >= len(heads):
                raise ArtifactError(f'block times have {len(heads)} heads, exit {e} needs one')
            row = list(trunk[:int(x['attach'])]) + [heads[k]]
        if len(row) != len(x['layers']):
            raise ArtifactError(f'exit {e}: {len(row)} block times for {len(x["layers"])} '
                                'layers (profiled another cut of the model?)')
        out[e] = row
    return out


def fit_prefixes(profile: Sequence[float], measured: Mapping[int, float],
                 weights: Optional[Mapping[int, float]] = None) -> List[float]:
    """
    Return per-layer times of a branch whose prefixes (first ``s`` layers) were measured.

    ``profile``: the branch's modelled per-layer times; ``measured``: ``{s: median ms of the
    first s layers}`` for some ``1 <= s <= len(profile)``. The medians are made non-decreasing
    (pooled adjacent violators: a longer prefix measured faster is noise), a pool's value the
    mean of its medians weighted by ``weights`` (e.g. each median's frames; default 1 each:
    the better-measured prefix then counts for more); a prefix not measured
    is interpolated in proportion to the profiled layers between its measured neighbours, and
    beyond the last measured one scaled like it. Layer ``k``'s time is prefix ``k+1`` less
    prefix ``k``, so the first layer also holds the frame's fixed cost. Raises ValueError when
    nothing in range was measured.
    """
    prefix = _fitted_prefixes(profile, measured, weights)
    return [prefix[s + 1] - prefix[s] for s in range(len(profile))]


def _fitted_prefixes(profile: Sequence[float], measured: Mapping[int, float],
                     weights: Optional[Mapping[int, float]] = None) -> List[float]:
    """Return ``fit_prefixes``' prefix times, splits 0..n."""
    n = len(profile)
    points = sorted((int(s), float(v)) for s, v in measured.items() if 0 < int(s) <= n)
    if not points:
        raise ValueError(f'no prefix of the {n} layers measured')
    w = {s: float((weights or {}).get(s, 1.0)) for s, _ in points}
    if not all(x > 0 for x in w.values()):
        raise ValueError(f'weights must be > 0, got {weights!r}')
    pools: List[Tuple[float, float, List[int]]] = []   # (weighted sum, weight, their splits)
    for s, v in points:
        pools.append((v * w[s], w[s], [s]))
        while len(pools) > 1 and pools[-2][0] / pools[-2][1] > pools[-1][0] / pools[-1][1]:
            v2, w2, s2 = pools.pop()
            pools[-1] = (pools[-1][0] + v2, pools[-1][1] + w2, pools[-1][2] + s2)
    fit = {s: total / weight for total, weight, splits in pools for s in splits}
    cum = [0.0]
    for t in profile:
        cum.append(cum[-1] + float(t))
    known = [(0, 0.0)] + sorted(fit.items())
    prefix = [0.0] * (n + 1)
    for s in range(1, n + 1):
        if s in fit:
            prefix[s] = fit[s]
            continue
        lo = max(k for k in known if k[0] < s)
        hi = [k for k in known if k[0] > s]
        if hi:
            hs, hv = hi[0]
            span = cum[hs] - cum[lo[0]]
            share = (cum[s] - cum[lo[0]]) / span if span > 0 else 0.0
            prefix[s] = lo[1] + (hv - lo[1]) * share
        else:
            ratio = lo[1] / cum[lo[0]] if cum[lo[0]] > 0 else 1.0
            prefix[s] = lo[1] + (cum[s] - cum[lo[0]]) * ratio
    return prefix


def measured_robot_blocks(latency: Mapping[str, Any], table: Mapping[str, Any],
                          measured: Mapping[Tuple[int, int], float], scale: float,
                          weights: Optional[Mapping[Tuple[int, int], float]] = None,
                          encoders: Optional[Mapping[Tuple[int, str], float]] = None
                          ) -> Dict[str, Any]:
    """
    Return ``latency`` with the robot's block times taken from live prefixes of the robot.

    ``measured``: the median live robot time (ms) of configurations ``(exit, split)``: the
    whole-trunk exit at trunk splits, and each exit device-only. The trunk's blocks are
    ``fit_prefixes`` of its measured splits, weighted by ``weights`` (default 1 each; the first
    block also holds the frame's fixed cost: normalisation, conversions). A side exit's head is
    its device-only time less the trunk prefix it leaves from (the profiled head scaled like
    the trunk when not measured, and never below a tenth of it). Every time is divided by
    ``scale`` (the planner's ``robot_time_scale``), so that the planner, multiplying by it,
    plans the measured robot. ``encoders``: the live robot time (ms) of learned bottleneck
    encoders ``(split, name)`` (a bottleneck's prefix less the raw one), likewise divided by
    ``scale``, as ``encode_ms`` {"split/name": ms}: ``problem_for`` plans them in place of the
    encoding table's, which are timed on the training host, not through the robot's emulation.
    Raises ValueError without a trunk split measured or for a bad ``scale``.
    """
    if not scale > 0:
        raise ValueError(f'scale must be > 0, got {scale!r}')
    robot = latency['hosts']['robot']
    trunk = [float(v) for v in robot['trunk_ms']]
    heads = [float(v) for v in robot['heads_ms']]
    n = len(trunk)
    full = [x for x in table['exits'] if x['attach'] is None]
    if not full:
        raise ValueError('the model table has no whole-trunk exit')
    e_full = int(full[0]['exit'])
    points = {s: float(v) for (e, s), v in measured.items() if e == e_full and 0 < s <= n}
    if not points:
        raise ValueError(f'no trunk split of exit {e_full} measured')
    prefix = _fitted_prefixes(trunk, points, {s: w for (e, s), w in (weights or {}).items()
                                              if e == e_full})
    cum = sum(trunk)
    ratio_all = prefix[n] / cum if cum > 0 else 1.0
    side = [x for x in table['exits'] if x['attach'] is not None]
    new_heads = []
    for k, x in enumerate(side):
        a, e = int(x['attach']), int(x['exit'])
        head = heads[k] if k < len(heads) else 0.0
        whole = measured.get((e, a + 1))
        live = whole - prefix[a] if whole is not None else head * ratio_all
        new_heads.append(max(live, 0.1 * head * ratio_all))
    body = dict(latency)
    hosts = dict(body['hosts'])
    info = dict(robot.get('info', {}))
    info.update({'calibrated': 'live prefixes of the emulated robot (sweep calibrate-robot)',
                 'scale': scale})
    hosts['robot'] = {'trunk_ms': [(prefix[s + 1] - prefix[s]) / scale for s in range(n)],
                      'heads_ms': [h / scale for h in new_heads], 'info': info}
    if encoders:
        hosts['robot']['encode_ms'] = {f'{int(s)}/{name}': max(float(ms), 0.0) / scale
                                       for (s, name), ms in sorted(encoders.items())}
    body['hosts'] = hosts
    return body


def split_bytes(table: Mapping[str, Any], bytes_per_element: float = 4.0
                ) -> Dict[int, List[int]]:
    """Per exit, payload bytes at splits 0..n: frame, each cut's tensor, 0."""
    out = {}
    for x in table['exits']:
        layers = x['layers']
        row = [int(table['frame_bytes'])]
        row += [int(round(r['out_bytes'] / 4.0 * bytes_per_element)) for r in layers[:-1]]
        out[int(x['exit'])] = row + [0]
    return out


def problem_for(table: Mapping[str, Any], latency: Mapping[str, Any],
                accuracy: Mapping[int, float], overhead_ms: float = DEFAULT_OVERHEAD_MS,
                bytes_per_element: float = 4.0, robot_time_scale: float = 1.0,
                message_bytes: int = MESSAGE_OVERHEAD_BYTES, encodings: Sequence[str] = ('raw',),
                encoding_table: Optional[Mapping[Tuple[int, int, str], Any]] = None
                ) -> EdgentProblem:
    """
    Return the ``EdgentProblem`` of a described model (see module docstring).

    ``encodings`` other than raw (``jpeg``, ``bn<c>``...) become variants of the cuts the
    ``encoding_table`` (``load_model_encodings``) measured them at; a bottleneck's encoder is
    robot compute and is scaled with ``robot_time_scale`` like the layers. Encoder times the
    latency file measured on the robot (its robot ``encode_ms``, ``measured_robot_blocks``)
    replace the table's at every exit of their cut.
    """
    robot = branch_ms(table, latency, 'robot')
    edge = branch_ms(table, latency, 'edge')
    exits = sorted(robot)
    missing = [e for e in exits if e not in accuracy]
    if missing:
        raise ArtifactError(f'no top-1 for exits {missing} (edgent-ros train-exits, or '
                            '--assume-accuracy for a model with random weights)')
    acc = {e: accuracy[e] for e in exits}
    measured = latency['hosts']['robot'].get('encode_ms') or {}
    if measured and encoding_table is not None:
        encoding_table = {k: (v._replace(encode_ms=float(measured[f'{k[1]}/{k[2]}']))
                              if f'{k[1]}/{k[2]}' in measured else v)
                          for k, v in encoding_table.items()}
    variants = encoding_variants(robot, encodings, encoding_table, acc)
    problem = EdgentProblem(acc, robot, edge, split_bytes(table, bytes_per_element),
                            overhead_ms, variants=variants, message_bytes=message_bytes)
    return scale_robot(problem, float(robot_time_scale))
