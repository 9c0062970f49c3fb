"""Build small TF.js graph models the way jax2tf + the TF.js converter lay them out, for tests.

Parameters become ``Const`` nodes — kernels anonymous (``jax2tf_arg_N/ReadVariableOp``), biases and
layer-norm parameters reshaped to 1×1×1×C — each consumed by one op named after its Flax scope.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

PREFIX = "StatefulPartitionedCall/jax2tf_apply_/Wrapper/backbone/"


class GraphBuilder:
    """Accumulates nodes and constants; writes ``model.json`` + shards, or an npm-style ``.tgz``."""

    def __init__(self) -> None:
        self.nodes: list[dict] = [
            {"name": "xs_0", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}}
        ]
        self.constants: list[tuple[str, np.ndarray]] = []
        self._anonymous = 0

    def const(self, name: str, value: np.ndarray) -> str:
        dtype = {np.dtype(np.float32): "DT_FLOAT", np.dtype(np.int32): "DT_INT32"}[value.dtype]
        self.nodes.append({"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}, "value": {}}})
        self.constants.append((name, value))
        return name

    def anonymous(self, value: np.ndarray) -> str:
        self._anonymous += 1
        return self.const(f"StatefulPartitionedCall/jax2tf_arg_{self._anonymous}/ReadVariableOp", value)

    def op(self, name: str, op: str, inputs: list[str]) -> str:
        self.nodes.append({"name": name, "op": op, "input": inputs})
        return name

    def add_module(self, path: str, module: nn.Module) -> None:
        """Emit the nodes of one PyTorch module of the port under Flax scope ``path`` (``a/b/c``)."""
        scope = PREFIX + path
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            weight = module.weight.detach().numpy()
            kernel = weight.transpose(2, 3, 1, 0)  # OIHW → HWIO; ConvT IOHW → H W O I
            if isinstance(module, nn.Conv2d):
                y = self.op(
                    f"{scope}/Conv2D", "Conv2D", ["xs_0", self.anonymous(np.ascontiguousarray(kernel))]
                )
            else:
                sizes = self.const(f"{scope}/conv2d_transpose/input_sizes", np.array([1, 2, 2, 1], np.int32))
                y = self.op(
                    f"{scope}/conv2d_transpose",
                    "Conv2DBackpropInput",
                    [sizes, self.anonymous(np.ascontiguousarray(kernel)), "xs_0"],
                )
            bias = self.const(f"{scope}/Reshape", module.bias.detach().numpy().reshape(1, 1, 1, -1))
            self.op(f"{scope}/jit_fn_/AddV2", "AddV2", [y, bias])
        elif isinstance(module, nn.Linear):
            y = self.op(
                f"{scope}/einsum/Einsum",
                "Einsum",
                ["xs_0", self.anonymous(module.weight.detach().numpy().T.copy())],
            )
            bias = self.const(f"{scope}/Reshape", module.bias.detach().numpy().reshape(1, 1, 1, -1))
            self.op(f"{scope}/jit_fn_/AddV2", "AddV2", [y, bias])
        elif isinstance(module, nn.LayerNorm):
            scale = self.const(f"{scope}/Reshape_2", module.weight.detach().numpy().reshape(1, 1, 1, -1))
            bias = self.const(f"{scope}/Reshape_3", module.bias.detach().numpy().reshape(1, 1, 1, -1))
            y = self.op(f"{scope}/jit_fn_/Mul_4", "Mul", ["xs_0", scale])
            self.op(f"{scope}/jit_fn_/AddV2_1", "AddV2", [y, bias])
        else:
            raise TypeError(type(module))

    def add_network(self, network: nn.Module) -> None:
        """Every parameterised leaf module of ``network``, plus a few constants that are not
        parameters (int shapes, a 1×1 float feeding BroadcastTo, a scalar), as a real export has."""
        for name, module in network.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.LayerNorm)):
                path = name.removesuffix(".conv").replace(".", "/")
                self.add_module(path, module)
        shape = self.const(PREFIX + "resize/BroadcastTo/shape", np.array([4, 4], np.int32))
        fill = self.const(PREFIX + "resize/Reshape", np.zeros((1, 1), np.float32))
        self.op(PREFIX + "resize/BroadcastTo", "BroadcastTo", [fill, shape])
        eps = self.const(PREFIX + "LayerNorm/Const_1", np.array(1e-6, np.float32))
        self.op(PREFIX + "LayerNorm/AddV2", "AddV2", ["xs_0", eps])
        self.op("Identity", "Identity", ["xs_0"])

    def model_json(self, shards: int = 2) -> tuple[dict, dict[str, bytes]]:
        data = b"".join(value.astype(value.dtype.newbyteorder("<")).tobytes() for _, value in self.constants)
        cut = len(data) // shards
        pieces = [data[i * cut : (i + 1) * cut if i < shards - 1 else len(data)] for i in range(shards)]
        files = {f"group1-shard{i + 1}of{shards}.bin": piece for i, piece in enumerate(pieces)}
        weights = [
            {
                "name": name,
                "shape": list(value.shape),
                "dtype": {"float32": "float32", "int32": "int32"}[str(value.dtype)],
            }
            for name, value in self.constants
        ]
        model = {
            "format": "graph-model",
            "modelTopology": {"node": self.nodes, "library": {}, "versions": {}},
            "weightsManifest": [{"paths": list(files), "weights": weights}],
        }
        return model, files

    def write_folder(self, folder: Path, **kwargs) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        model, files = self.model_json(**kwargs)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / "model.json").write_text(json.dumps(model))
        return folder / "model.json"

    def write_tarball(self, path: Path, **kwargs) -> Path:
        model, files = self.model_json(**kwargs)
        members = {"package/package.json": b"{}", "package/models/model.json": json.dumps(model).encode()}
        members.update({f"package/models/{name}": data for name, data in files.items()})
        with tarfile.open(path, "w:gz") as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path


def graph_of(network: nn.Module) -> GraphBuilder:
    builder = GraphBuilder()
    builder.add_network(network)
    return builder


def randomize(network: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a distinct random value (biases and norms too), reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return network
