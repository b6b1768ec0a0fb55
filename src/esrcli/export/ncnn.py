"""ncnn model files (``NAME.param`` + ``NAME.bin``): export of RRDBNet / SRVGGNetCompact and import back.

The ncnn text format: the ``.param`` file starts with the magic ``7767517``, then
``layer_count blob_count``, then one line per layer::

    Type  name  n_in n_out  input_blobs... output_blobs...  key=value ...

(``-233KK=count,v1,v2,...`` holds an array for key ``KK``). The ``.bin`` file holds the
weights of the layers in the same order, back to back:

* ``Convolution``: the weights as one *tagged* array: a 4-byte tag, ``0x01306B47`` for
  float16 data (padded to 4 bytes), ``0`` for raw float32 (a few other tags exist for
  quantised files: a 256-entry float table plus uint8 indices is read too; int8 is refused);
  then, with ``5=1``, the bias as raw float32 (no tag). PyTorch's ``(out, in, kh, kw)`` order.
* ``PReLU``: the ``0=num_slope`` slopes as raw float32.

esr writes what realesrgan-ncnn-vulkan and Upscayl load as custom models: input blob
``data``, output blob ``output``, RGB in ``[0, 1]``, float16 convolution weights, the
same layer layout as the official Real-ESRGAN ncnn files (fused LeakyReLU, ``Eltwise``
with coefficients for the 0.2 residual scaling, ``Interp`` nearest for upsampling,
``PixelShuffle`` and ``Reorg`` (pixel-unshuffle, x2/x1 RRDBNet)).
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from esrcli.archs import RRDBNet, SRVGGNetCompact
from esrcli.atomic import atomic_output
from esrcli.errors import WeightsError
from esrcli.weights.detect import ModelInfo, check_state_dict, detect_arch
from esrcli.weights.io import check_float16_range

__all__ = ["MAGIC", "FP16_TAG", "export_ncnn", "import_ncnn", "read_ncnn_param", "NcnnLayer", "NcnnImport"]

MAGIC = "7767517"
FP16_TAG = 0x01306B47
_INT8_TAG = 0x000D4B38
_FP32_RAW_TAG = 0x0002C056
_INPUT = "data"
_OUTPUT = "output"


# --------------------------------------------------------------------------- writing


@dataclass
class _Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: str = ""


class _Writer:
    """Builds the layer list and the weight bytes; splits shared blobs at the end."""

    def __init__(self) -> None:
        self.layers: list[_Layer] = []
        self.bin = bytearray()
        self._n = 0

    def blob(self) -> str:
        self._n += 1
        return str(self._n)

    def add(self, type_: str, name: str, inputs: list[str], params: str = "", output: str | None = None) -> str:
        out = output or self.blob()
        self.layers.append(_Layer(type_, name, list(inputs), [out], params))
        return out

    def conv(self, name: str, conv: nn.Conv2d, x: str, act: tuple[str, float] | None = None, output: str | None = None) -> str:
        w = conv.weight.detach().float().cpu()
        if conv.bias is None or conv.groups != 1 or conv.stride != (1, 1) or conv.dilation != (1, 1):
            raise WeightsError(f"{name}: only plain convolutions with bias export to ncnn")
        o, _, kh, kw = w.shape
        pad_h, pad_w = conv.padding  # type: ignore[misc]
        params = f"0={o} 1={kw} 11={kh} 4={pad_w} 14={pad_h} 5=1 6={w.numel()}"
        if act is not None:
            kind, slope = act
            params += " 9=1" if kind == "relu" else f" 9=2 -23310=1,{slope:e}"
        half = w.numpy().astype(np.float16).tobytes()
        self.bin += struct.pack("<I", FP16_TAG) + half + b"\0" * (-len(half) % 4)
        self.bin += conv.bias.detach().float().cpu().numpy().astype("<f4").tobytes()
        return self.add("Convolution", name, [x], params, output)

    def prelu(self, name: str, weight: Tensor, x: str) -> str:
        self.bin += weight.detach().float().cpu().numpy().astype("<f4").tobytes()
        return self.add("PReLU", name, [x], f"0={weight.numel()}")

    def text(self) -> str:
        uses = Counter(b for layer in self.layers for b in layer.inputs)
        layers: list[_Layer] = []
        pending: dict[str, list[str]] = {}
        for layer in self.layers:
            layer.inputs = [pending[b].pop(0) if b in pending else b for b in layer.inputs]
            layers.append(layer)
            for out in layer.outputs:
                if uses[out] > 1:
                    outs = [f"{out}_splitncnn_{i}" for i in range(uses[out])]
                    layers.append(_Layer("Split", f"splitncnn_{out}", [out], outs))
                    pending[out] = list(outs)
        blobs = {b for layer in layers for b in layer.outputs}
        lines = [MAGIC, f"{len(layers)} {len(blobs)}"]
        for layer in layers:
            io_ = " ".join(layer.inputs + layer.outputs)
            line = f"{layer.type:<24} {layer.name:<24} {len(layer.inputs)} {len(layer.outputs)} {io_}"
            lines.append(f"{line} {layer.params}".rstrip())
        return "\n".join(lines) + "\n"


def _rrdbnet_graph(g: _Writer, net: RRDBNet) -> None:
    lrelu = ("leaky", 0.2)
    x = _INPUT
    if net.unshuffle > 1:
        # Reorg mode 0 is PyTorch's pixel_unshuffle channel order (c * r * r + dy * r + dx);
        # mode 1 puts the phase first ((dy * r + dx) * C + c).
        x = g.add("Reorg", "pixel_unshuffle", [x], f"0={net.unshuffle} 1=0")
    feat = g.conv("conv_first", net.conv_first, x)
    body = feat
    for b, block in enumerate(net.body):
        cur = body
        for r, rdb in enumerate((block.rdb1, block.rdb2, block.rdb3), start=1):
            pre = f"body.{b}.rdb{r}"
            feats = [cur]
            for j, conv in enumerate((rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4), start=1):
                inp = feats[0] if j == 1 else g.add("Concat", f"{pre}.cat{j}", feats)
                feats.append(g.conv(f"{pre}.conv{j}", conv, inp, lrelu))
            x5 = g.conv(f"{pre}.conv5", rdb.conv5, g.add("Concat", f"{pre}.cat5", feats))
            cur = g.add("Eltwise", f"{pre}.res", [x5, cur], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        body = g.add("Eltwise", f"body.{b}.res", [cur, body], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    feat = g.add("BinaryOp", "trunk_add", [feat, g.conv("conv_body", net.conv_body, body)], "0=0")
    feat = g.add("Interp", "up1", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")
    feat = g.conv("conv_up1", net.conv_up1, feat, lrelu)
    feat = g.add("Interp", "up2", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")
    feat = g.conv("conv_up2", net.conv_up2, feat, lrelu)
    feat = g.conv("conv_hr", net.conv_hr, feat, lrelu)
    g.conv("conv_last", net.conv_last, feat, output=_OUTPUT)


def _srvgg_graph(g: _Writer, net: SRVGGNetCompact) -> None:
    out = _INPUT
    layers = list(net.body)
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.Conv2d):
            nxt = layers[i + 1]
            act = None
            if isinstance(nxt, nn.LeakyReLU):
                act = ("leaky", float(nxt.negative_slope))
            elif isinstance(nxt, nn.ReLU):
                act = ("relu", 0.0)
            out = g.conv(f"body.{i}", layer, out, act)
        elif isinstance(layer, nn.PReLU):
            out = g.prelu(f"body.{i}", layer.weight, out)
    last = len(layers) - 1
    out = g.conv(f"body.{last}", layers[last], out)
    out = g.add("PixelShuffle", "upsampler", [out], f"0={net.scale}")
    s = float(net.scale)
    mode = 2 if net.upsample == "bilinear" else 1  # ncnn Interp resize_type; align_corner 0 = half-pixel
    base = g.add("Interp", "residual_up", [_INPUT], f"0={mode} 1={s:e} 2={s:e}")
    g.add("BinaryOp", "residual_add", [out, base], "0=0", output=_OUTPUT)


def export_ncnn(net: nn.Module, info: ModelInfo, folder: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``folder/NAME.param`` and ``folder/NAME.bin`` (atomically, each).

    The network maps the blob ``data`` ``(C, H, W)`` RGB in ``[0, 1]`` to ``output``
    ``(C, H*scale, W*scale)``; convolution weights are stored as float16, biases and PReLU
    slopes as float32. Loadable by realesrgan-ncnn-vulkan / Upscayl (``-n NAME``, ``-s scale``).
    For x2 / x1 RRDBNet models the input size must be divisible by 2 / 4.

    Args:
        net: an RRDBNet or SRVGGNetCompact.
        info: its architecture and hyper-parameters (for the error messages).
        folder: the output folder (created if missing).
        name: the model name, file names without suffix.

    Returns:
        ``(param_path, bin_path)``.

    Raises:
        WeightsError: an unsupported architecture, or an unwritable folder.
    """
    folder = Path(folder)
    check_float16_range(net, str(folder / f"{name}.bin"), "ncnn files hold float16 weights; export to ONNX in float32 instead")
    g = _Writer()
    if isinstance(net, RRDBNet):
        _rrdbnet_graph(g, net)
    elif isinstance(net, SRVGGNetCompact):
        _srvgg_graph(g, net)
    else:
        raise WeightsError(f"cannot export {info.arch} to ncnn: only RRDBNet and SRVGGNetCompact")
    g.layers.insert(0, _Layer("Input", "input", [], [_INPUT]))
    param_path, bin_path = folder / f"{name}.param", folder / f"{name}.bin"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(bin_path) as fh:
            fh.write(bytes(g.bin))
        with atomic_output(param_path) as fh:
            fh.write(g.text().encode("ascii"))
    except OSError as exc:
        raise WeightsError(f"{folder}: cannot write the ncnn files ({exc.strerror or exc})") from None
    return param_path, bin_path


# --------------------------------------------------------------------------- reading


@dataclass
class NcnnLayer:
    """One layer line of a ``.param`` file; ``params`` maps keys to an int, a float or a list."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, Any] = field(default_factory=dict)


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_ncnn_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """Parse an ncnn text ``.param`` file.

    Raises:
        WeightsError: missing file, no ``7767517`` magic (e.g. a binary ``.param.bin``), or
            a malformed line (the message names the file and line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii", errors="strict").splitlines()
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: not an ncnn text .param file ({exc})") from None
    if not lines or lines[0].strip() != MAGIC:
        raise WeightsError(f"{path}: not an ncnn .param file (the first line must be {MAGIC})")
    layers = []
    for no, line in enumerate(lines[2:], start=3):
        tok = line.split()
        if not tok:
            continue
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
            inputs, outputs = tok[4 : 4 + n_in], tok[4 + n_in : 4 + n_in + n_out]
            if len(outputs) != n_out:
                raise ValueError("too few blob names")
            params: dict[int, Any] = {}
            for kv in tok[4 + n_in + n_out :]:
                k, v = kv.split("=", 1)
                key = int(k)
                if key <= -23300:
                    values = v.split(",")
                    params[-key - 23300] = [_number(x) for x in values[1:]]
                else:
                    params[key] = _number(v)
        except (ValueError, IndexError) as exc:
            raise WeightsError(f"{path}:{no}: malformed layer line ({exc})") from None
        layers.append(NcnnLayer(tok[0], tok[1], inputs, outputs, params))
    return layers


class _BinReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except FileNotFoundError:
            raise WeightsError(f"{path}: no such file") from None
        except OSError as exc:
            raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise WeightsError(f"{self.path}: ends at byte {len(self.data)} inside {what} (truncated, or it belongs to another .param)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def raw_f32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), "<f4").copy()

    def tagged(self, count: int, what: str) -> tuple[np.ndarray, str]:
        (tag,) = struct.unpack("<I", self.take(4, what))
        if tag == FP16_TAG:
            data = self.take(count * 2 + (-(count * 2) % 4), what)
            return np.frombuffer(data[: count * 2], "<f2").astype(np.float32), "float16"
        if tag in (0, _FP32_RAW_TAG):
            return self.raw_f32(count, what), "float32"
        if tag == _INT8_TAG:
            raise WeightsError(f"{self.path}: {what}: int8-quantised weights are not supported")
        table = self.raw_f32(256, what)
        index = np.frombuffer(self.take(count + (-count % 4), what)[:count], np.uint8)
        return table[index], "quantised"


_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "Reorg",
               "ReLU", "Clip", "Noop", "Reshape", "Permute", "Crop", "Padding", "Flatten"}


@dataclass
class NcnnImport:
    """What :func:`import_ncnn` read.

    Attributes:
        state_dict: BasicSR key names, float32 tensors.
        info: the detected architecture and hyper-parameters.
        storage: ``"float16"``, ``"float32"`` or ``"quantised"``, how the weights were stored.
        notes: remarks for the user, e.g. a final resize esr does not carry over.
    """

    state_dict: dict[str, Tensor]
    info: ModelInfo
    storage: str
    notes: list[str] = field(default_factory=list)


def import_ncnn(param: str | os.PathLike, bin_: str | os.PathLike) -> NcnnImport:
    """Read an ncnn RRDBNet or SRVGGNetCompact model into an esr state dict.

    Works on realesrgan-ncnn-vulkan and Upscayl model folders (official Real-ESRGAN files,
    chaiNNer / onnx2ncnn conversions of ESRGAN models) and on esr's own exports. The
    convolutions map in graph order onto the architecture's keys; the result must load
    strictly and every byte of the ``.bin`` must be consumed.

    Returns:
        An :class:`NcnnImport`. A trailing ``Interp`` after the network (the official
        ``realesr-animevideov3-x2/-x3`` files: the x4 network, then a bicubic downscale) is
        not part of the esr model: the x4 network is imported and a note says so.

    Raises:
        WeightsError: unreadable files, an unsupported layer type or weight storage, a
            ``.bin`` that is too short or too long, or a layout that is neither RRDBNet
            nor SRVGGNetCompact (the message names the file).
    """
    param, bin_ = Path(param), Path(bin_)
    layers = read_ncnn_param(param)
    reader = _BinReader(bin_)
    convs: list[tuple[NcnnLayer, Tensor, Tensor, str]] = []
    prelu_after: dict[int, Tensor] = {}
    relu_after: dict[int, float] = {}
    storage: set[str] = set()
    shuffle = 0
    residual_up = 1  # resize_type of the Interp on the input (SRVGGNetCompact's global residual)
    reorg_phase_first = 0  # Reorg 1=1: the stride of a phase-first pixel-unshuffle
    notes: list[str] = []
    for layer in layers:
        p = layer.params
        if layer.type == "Convolution":
            out, kw = int(p.get(0, 0)), int(p.get(1, 0))
            kh, count = int(p.get(11, kw)), int(p.get(6, 0))
            if int(p.get(8, 0)) or int(p.get(19, 0)):
                raise WeightsError(f"{param}: {layer.name}: int8 or dynamic-weight convolutions are not supported")
            if out <= 0 or kw <= 0 or count % (out * kh * kw):
                raise WeightsError(f"{param}: {layer.name}: inconsistent convolution sizes (0={out} 1={kw} 6={count})")
            values, kind = reader.tagged(count, f"{layer.name} weights")
            storage.add(kind)
            weight = torch.from_numpy(values).reshape(out, count // (out * kh * kw), kh, kw)
            if not int(p.get(5, 0)):
                raise WeightsError(f"{param}: {layer.name}: a convolution without bias is not RRDBNet / SRVGGNetCompact")
            bias = torch.from_numpy(reader.raw_f32(out, f"{layer.name} bias"))
            act = {0: "", 1: "relu", 2: "leakyrelu"}.get(int(p.get(9, 0)), "other")
            slope = p.get(10, [0.0])
            if act == "leakyrelu" and slope and abs(float(slope[0]) - 0.1) < 1e-6:
                act = "leakyrelu0.1"
            convs.append((layer, weight, bias, act))
        elif layer.type == "PReLU":
            n = int(p.get(0, 0))
            prelu_after[len(convs) - 1] = torch.from_numpy(reader.raw_f32(n, f"{layer.name} slopes"))
        elif layer.type == "Reorg" and int(p.get(1, 0)) == 1:
            reorg_phase_first = int(p.get(0, 1))
        elif layer.type == "ReLU":
            relu_after[len(convs) - 1] = float(p.get(0, 0.0))
        elif layer.type == "PixelShuffle":
            shuffle = int(p.get(0, 1))
        elif layer.type == "Interp" and any(b == _INPUT or b.startswith(f"{_INPUT}_splitncnn") for b in layer.inputs):
            residual_up = int(p.get(0, 0))
            if residual_up not in (1, 2) or int(p.get(6, 0)):
                raise WeightsError(f"{param}: {layer.name}: the input is enlarged by Interp resize_type {residual_up}"
                                   f"{' with align_corner' if int(p.get(6, 0)) else ''}: only nearest or half-pixel bilinear import")
        elif layer.type == "Interp" and shuffle and _OUTPUT in layer.outputs and _INPUT not in layer.inputs:
            notes.append(
                f"the ncnn model resizes the result by {p.get(1, 1.0):g} at the end ({'bicubic' if p.get(0) == 3 else 'resize'}); "
                "imported the network before it: use --scale to get the same output size"
            )
        elif layer.type not in _WEIGHTLESS:
            raise WeightsError(f"{param}: {layer.name}: unsupported layer type {layer.type} (only RRDBNet / SRVGGNetCompact models import)")
    left = len(reader.data) - reader.pos
    if left:
        raise WeightsError(f"{bin_}: {left} bytes left over after the weights of {param.name} (not its .bin, or another layout)")
    if not convs:
        raise WeightsError(f"{param}: no convolutions: not an SR model")
    sd: dict[str, Tensor] = {}
    act_type = ""
    if shuffle:
        for i, (_, w, b, act) in enumerate(convs):
            sd[f"body.{2 * i}.weight"], sd[f"body.{2 * i}.bias"] = w, b
            if i < len(convs) - 1:
                if i in prelu_after:
                    sd[f"body.{2 * i + 1}.weight"] = prelu_after[i]
                    kind = "prelu"
                elif i in relu_after:
                    slope = relu_after[i]
                    kind = "relu" if slope == 0 else ("leakyrelu" if abs(slope - 0.1) < 1e-6 else "?")
                else:
                    kind = {"relu": "relu", "leakyrelu0.1": "leakyrelu"}.get(act, "?")
                if act_type and kind != act_type or kind == "?":
                    raise WeightsError(f"{param}: activations are not those of SRVGGNetCompact (PReLU, ReLU or LeakyReLU 0.1)")
                act_type = kind
    else:
        if prelu_after or (len(convs) - 6) % 15 or len(convs) < 6:
            raise WeightsError(f"{param}: {len(convs)} convolutions: neither RRDBNet (6 + 15 per block) nor SRVGGNetCompact (no PixelShuffle)")
        keys = ["conv_first"]
        for b in range((len(convs) - 6) // 15):
            keys += [f"body.{b}.rdb{r}.conv{j}" for r in (1, 2, 3) for j in range(1, 6)]
        keys += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
        for key, (_, w, b, _) in zip(keys, convs):
            sd[f"{key}.weight"], sd[f"{key}.bias"] = w, b
        if reorg_phase_first > 1:  # to PyTorch's channel order c * r * r + phase
            w = sd["conv_first.weight"]
            r2 = reorg_phase_first**2
            c = w.shape[1] // r2
            order = [k * c + ch for ch in range(c) for k in range(r2)]
            sd["conv_first.weight"] = w[:, order].contiguous()
    meta = {"provenance": f"imported from ncnn {param.name}"}
    try:
        info = detect_arch(sd)
        if info.arch == "SRVGGNetCompact" and (act_type and info.params.get("act_type") != act_type or residual_up == 2):
            params = {**info.params, "act_type": act_type or info.params["act_type"]}
            if residual_up == 2:
                params["upsample"] = "bilinear"
            check_state_dict(sd, info.arch, params)
            info = ModelInfo(info.arch, params, info.scale)
    except WeightsError as exc:
        raise WeightsError(f"{param}: {exc}") from None
    info = ModelInfo(info.arch, info.params, info.scale, meta)
    kind = "float16" if storage == {"float16"} else ("quantised" if "quantised" in storage else "float32")
    return NcnnImport(sd, info, kind, notes)
