"""Read the weights of a TensorFlow.js graph model (``model.json`` + binary shards) into a PyTorch
state dict, with numpy alone (no TensorFlow).

A graph model stores every parameter as a ``Const`` node. Many of them are anonymous (jax2tf names
kernels ``jax2tf_arg_N``), so a parameter is identified by the single node that consumes it: the
consumer's scope is the Flax module path, and the consumer's op says the role:

================================  ========================  =================================
consumer                          role                      PyTorch key (tensor layout)
================================  ========================  =================================
``Conv2D``                        convolution kernel        ``<path>.conv.weight`` (HWIO → OIHW)
``Conv2DBackpropInput``           transposed-conv kernel    ``<path>.conv.weight`` (HWOI → IOHW)
``Einsum`` ``...g,gf->...f``      dense kernel              ``<path>.weight`` (in×out → out×in)
``Mul`` (1×1×1×C)                 layer-norm scale          ``<path>.weight``
``AddV2`` (1×1×1×C)               bias of the module        ``<path>[.conv].bias``
================================  ========================  =================================

The mapping is strict: each parameter has exactly one consumer, each module gets exactly the roles
of one kind (kernel + bias, or scale + bias), and nothing is left over. The model can be read from
its folder (``model.json``) or straight from the npm tarball that ships it (``.tgz``), unpacked in
memory.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import WeightsError

__all__ = ["GraphModel", "is_tfjs_weights", "read_graph_model", "read_tfjs_state_dict", "tfjs_state_dict"]

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
# Scope segments that belong to an op's internals, not to a module: the module path ends before them.
_OP_SCOPES = ("jit_", "einsum", "Conv2D", "conv2d_transpose")
_ROLE_OPS = {
    "Conv2D": "conv",
    "Conv2DBackpropInput": "conv_transpose",
    "Einsum": "dense",
    "Mul": "scale",
    "AddV2": "bias",
}
# Largest manifest a graph model may declare (bytes of weights), checked before reading shards.
_MAX_WEIGHT_BYTES = 2 << 30


@dataclass(frozen=True)
class GraphModel:
    """A parsed graph model: its nodes (``name → node dict``), consumers and constant values."""

    nodes: Mapping[str, Mapping[str, Any]]
    consumers: Mapping[str, list[tuple[str, int]]]
    constants: Mapping[str, np.ndarray]
    prefix: str
    content_sha256: str


def is_tfjs_weights(path: str | Path) -> bool:
    """True for a TF.js graph model reference: a ``model.json`` or a ``.tgz`` package."""
    name = Path(path).name
    return name.endswith((".json", ".tgz", ".tar.gz"))


class _Folder:
    def __init__(self, model_json: Path) -> None:
        self.root = model_json.parent
        self.model_json = model_json

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def topology(self) -> bytes:
        return self.model_json.read_bytes()


class _Tarball:
    """An npm package tarball: ``package/**/model.json`` and its shards, read without unpacking."""

    def __init__(self, path: Path) -> None:
        self.archive = tarfile.open(path, "r:gz")  # noqa: SIM115 - kept open while shards are read
        members = [m for m in self.archive.getmembers() if m.isfile()]
        jsons = [m for m in members if PurePosixPath(m.name).name == "model.json"]
        if len(jsons) != 1:
            raise WeightsError(f"{path.name} holds {len(jsons)} model.json files; expected exactly one")
        self.model_json = jsons[0]
        self.root = PurePosixPath(jsons[0].name).parent
        self.members = {m.name: m for m in members}

    def read(self, relative: str) -> bytes:
        name = str(self.root / relative)
        member = self.members.get(name)
        if member is None:
            raise WeightsError(f"the package has no weight shard {relative!r}")
        handle = self.archive.extractfile(member)
        assert handle is not None
        return handle.read()

    def topology(self) -> bytes:
        handle = self.archive.extractfile(self.model_json)
        assert handle is not None
        return handle.read()


def _source(path: Path) -> _Folder | _Tarball:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.name.endswith((".tgz", ".tar.gz")):
        try:
            return _Tarball(path)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise WeightsError(f"{path.name} is not a readable .tgz package ({err})") from None
    return _Folder(path)


def _decode_weights(
    manifest: list[Mapping[str, Any]], source: _Folder | _Tarball, digest: Any
) -> dict[str, np.ndarray]:
    constants: dict[str, np.ndarray] = {}
    for group in manifest:
        specs = group.get("weights", [])
        total = 0
        for spec in specs:
            if "quantization" in spec:
                raise WeightsError(f"quantized weights ({spec['name']}) are not supported")
            if spec.get("dtype") not in _DTYPES:
                raise WeightsError(f"weight {spec.get('name')!r} has unsupported dtype {spec.get('dtype')!r}")
            total += int(np.prod(spec["shape"], dtype=np.int64)) * np.dtype(_DTYPES[spec["dtype"]]).itemsize
        if total > _MAX_WEIGHT_BYTES:
            raise WeightsError(f"the manifest declares {total} bytes of weights; refusing to read that much")
        data = b"".join(source.read(p) for p in group.get("paths", []))
        digest.update(data)
        if len(data) != total:
            raise WeightsError(f"the weight shards hold {len(data)} bytes, the manifest expects {total}")
        offset = 0
        for spec in specs:
            dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(spec["shape"])
            constants[spec["name"]] = array
            offset += count * dtype.itemsize
    return constants


def read_graph_model(path: str | Path) -> GraphModel:
    """Parse a TF.js graph model from ``model.json`` or from an npm ``.tgz`` that contains one.

    ``content_sha256`` hashes ``model.json`` followed by the shards in manifest order: the same
    value for the package and for its unpacked folder."""
    path = Path(path)
    source = _source(path)
    try:
        topology = source.topology()
        digest = hashlib.sha256(topology)
        model = json.loads(topology)
        nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
        manifest = model["weightsManifest"]
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{path.name} is not a TF.js graph model ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise WeightsError(f"{path.name} cannot be read: {err}") from None
    try:
        constants = _decode_weights(manifest, source, digest)
    except OSError as err:
        raise WeightsError(f"a weight shard of {path.name} cannot be read: {err}") from None
    consumers: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for node in nodes.values():
        for index, name in enumerate(node.get("input", [])):
            consumers[name.lstrip("^").split(":")[0]].append((node["name"], index))
    return GraphModel(nodes, dict(consumers), constants, _common_prefix(nodes), digest.hexdigest())


def _common_prefix(nodes: Mapping[str, Any]) -> str:
    """The scope every module lives under (``.../Wrapper/backbone/`` for jax2tf exports)."""
    scoped = [name for name, node in nodes.items() if node["op"] in ("Conv2D", "Einsum")]
    if not scoped:
        return ""
    first = scoped[0].split("/")
    length = len(first)
    for name in scoped[1:]:
        parts = name.split("/")
        length = min(
            length,
            next((i for i, (a, b) in enumerate(zip(first, parts, strict=False)) if a != b), len(parts)),
        )
    return "/".join(first[:length]) + "/" if length else ""


def _module_path(consumer: str, prefix: str) -> str:
    parts = consumer[len(prefix) :].split("/")
    for index, part in enumerate(parts):
        if part.startswith(_OP_SCOPES):
            return ".".join(parts[:index])
    return ".".join(parts[:-1])


def _is_parameter(graph: GraphModel, name: str, array: np.ndarray) -> bool:
    if array.dtype != np.float32 or array.ndim == 0:
        return False
    users = graph.consumers.get(name, [])
    return any(graph.nodes[user]["op"] in _ROLE_OPS for user, _ in users)


def _layout(role: str, array: np.ndarray) -> np.ndarray:
    if role == "conv":  # HWIO → OIHW
        return array.transpose(3, 2, 0, 1)
    if role == "conv_transpose":  # H W out in → in out H W
        return array.transpose(3, 2, 0, 1)
    if role == "dense":  # in × out → out × in
        return array.T
    return array.reshape(-1)  # scale / bias: 1×1×1×C → C


def tfjs_state_dict(graph: GraphModel) -> dict[str, torch.Tensor]:
    """Map every parameter of a graph model onto PyTorch names (see the module docstring)."""
    roles: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for name, array in graph.constants.items():
        if not _is_parameter(graph, name, array):
            continue
        users = graph.consumers[name]
        if len(users) != 1:
            raise WeightsError(f"parameter {name} feeds {len(users)} nodes; expected exactly one")
        user, index = users[0]
        op = graph.nodes[user]["op"]
        role = _ROLE_OPS[op]
        if role in ("conv", "conv_transpose", "dense") and index != 1:
            raise WeightsError(f"parameter {name} is operand {index} of {op} {user}; expected the kernel")
        if role in ("scale", "bias") and array.shape[:-1] != (1,) * (array.ndim - 1):
            raise WeightsError(f"parameter {name} of shape {array.shape} is not a per-channel {role}")
        path = _module_path(user, graph.prefix)
        if role in roles[path]:
            raise WeightsError(f"module {path} has two {role} parameters")
        roles[path][role] = array
    state: dict[str, torch.Tensor] = {}
    for path, found in sorted(roles.items()):
        kinds = set(found)
        kernel = kinds & {"conv", "conv_transpose", "dense", "scale"}
        if len(kernel) != 1 or kinds - kernel != {"bias"}:
            raise WeightsError(
                f"module {path} has parameters {sorted(kinds)}; expected one kernel and a bias"
            )
        (role,) = kernel
        stem = f"{path}.conv" if role in ("conv", "conv_transpose") else path
        state[f"{stem}.weight"] = torch.from_numpy(_layout(role, found[role]).copy())
        state[f"{stem}.bias"] = torch.from_numpy(found["bias"].reshape(-1).copy())
    if not state:
        raise WeightsError("the graph model holds no parameters deblurkit can map")
    return state


def read_tfjs_state_dict(path: str | Path, content_sha256: str = "") -> dict[str, torch.Tensor]:
    """The PyTorch state dict of the TF.js graph model at ``path`` (``model.json`` or ``.tgz``);
    with ``content_sha256``, refused unless the model's content hashes to it."""
    graph = read_graph_model(path)
    if content_sha256 and graph.content_sha256 != content_sha256:
        raise WeightsError(
            f"sha256 mismatch for the graph model in {Path(path).name}: expected {content_sha256}, "
            f"got {graph.content_sha256}; refusing to load it"
        )
    return tfjs_state_dict(graph)
