"""Load a user's local HuBERT checkpoint: fairseq ``hubert_base_ls960.pt`` or the Hugging Face layout.

Two formats, one model (:class:`~speechkit.models.ssl.hubert.HubertModel`):

* **fairseq** (``{"model": state_dict, "cfg": {"model": {...}}}`` or the older ``"args"``
  Namespace): keys ``feature_extractor.conv_layers.0.0.weight``, ``layer_norm.weight``,
  ``post_extract_proj.weight``, ``encoder.pos_conv.0.weight_g``, ``encoder.layers.0.self_attn.k_proj.weight``,
  ``final_proj.weight``, ``label_embs_concat``, ...
* **Hugging Face** (``facebook/hubert-base-ls960``: a folder with ``config.json`` and
  ``pytorch_model.bin`` or ``model.safetensors``): keys ``feature_extractor.conv_layers.0.conv.weight``,
  ``feature_projection.projection.weight``, ``encoder.pos_conv_embed.conv.weight_g`` (or
  ``...conv.parametrizations.weight.original0``), ``encoder.layers.0.attention.k_proj.weight``, ...,
  optionally under a ``hubert.`` prefix (``HubertForCTC``).

Files are read with ``torch.load(weights_only=True)``. fairseq files pickle their config: an
``argparse.Namespace`` (old ``"args"``) is allow-listed (a plain attribute bag); any other
pickled class is refused with a one-line :class:`ModelFileError` naming it (re-save the file as
a plain dict). ``.safetensors`` files are read by a small reader here (the format is a JSON
header plus raw little-endian tensors), so no extra dependency is needed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import struct
from pathlib import Path

import torch
from torch import Tensor

from speechkit.errors import ModelFileError
from speechkit.models.ssl.hubert import HubertConfig, HubertModel

#: (fairseq regex, speechkit replacement); applied after stripping nothing.
FAIRSEQ_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.norm.\1"),
    (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_proj.\1"),
    (r"mask_emb", r"mask_emb"),
    (r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", r"pos_conv.\1"),
    (r"encoder\.pos_conv\.0\.parametrizations\.weight\.original0", r"pos_conv.weight_g"),
    (r"encoder\.pos_conv\.0\.parametrizations\.weight\.original1", r"pos_conv.weight_v"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"layers.\1.attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"layers.\1.attn_norm.\2"),
    (r"encoder\.layers\.(\d+)\.(fc1|fc2)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"layers.\1.final_norm.\2"),
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
    (r"label_embs_concat", r"label_embs"),
]
HF_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.(weight|bias)", r"feature_extractor.conv_layers.0.norm.\1"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"feature_proj.\1"),
    (r"masked_spec_embed", r"mask_emb"),
    (r"encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias)", r"pos_conv.\1"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", r"pos_conv.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", r"pos_conv.weight_v"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)", r"layers.\1.attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"layers.\1.attn_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"layers.\1.final_norm.\2"),
]
#: Keys of the real files that carry no weights we use (HF's masked-LM buffers; none in fairseq Base).
_IGNORED = re.compile(r"^(encoder\.pos_conv_embed\.conv\.weight|lm_head\..*|masked_spec_embed_.*)$")


def _rename(state: dict[str, Tensor], rules) -> tuple[dict[str, Tensor], list[str]]:
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(f"^{pattern}$", repl, key)] = value
                break
        else:
            if not _IGNORED.match(key):
                unknown.append(key)
    return out, unknown


def _inverse(state: dict[str, Tensor], rules) -> dict[str, Tensor]:
    """speechkit names -> the format's names (the first rule that maps a key back wins)."""
    inverse = []
    for pattern, repl in rules:
        parts = re.split(r"(\\\d)", repl)  # literal text and group references \1, \2, ...
        group_text = re.findall(r"\([^()]*\)", pattern)  # each group as the format's pattern spells it
        regex = "".join(group_text[int(part[1]) - 1] if re.fullmatch(r"\\\d", part) else re.escape(part)
                        for part in parts)
        order = [int(part[1]) for part in parts if re.fullmatch(r"\\\d", part)]
        numbers = iter(range(1, 10))
        template = re.sub(r"\((?:\\d\+|[^)]*)\)", lambda m, n=numbers: "\\" + str(next(n)), pattern)
        template = template.replace("\\.", ".")
        inverse.append((regex, order, template))
    out = {}
    for key, value in state.items():
        for regex, order, template in inverse:
            found = re.fullmatch(regex, key)
            if found:
                values = dict(zip(order, found.groups()))
                out[re.sub(r"\\(\d)", lambda m, v=values: v[int(m.group(1))], template)] = value
                break
    return out


def to_fairseq_state_dict(model: HubertModel) -> dict[str, Tensor]:
    """The model's weights under fairseq's key names (``weight_g/weight_v`` spelling).

    >>> from speechkit.models.ssl.presets import hubert_preset
    >>> state = to_fairseq_state_dict(HubertModel(hubert_preset("tiny_student")))
    >>> "encoder.pos_conv.0.weight_g" in state, "feature_extractor.conv_layers.0.0.weight" in state
    (True, True)
    """
    return _inverse(model.state_dict(), FAIRSEQ_RULES)


def to_hf_state_dict(model: HubertModel, parametrizations: bool = False) -> dict[str, Tensor]:
    """The model's weights under Hugging Face ``HubertModel`` key names (no pre-training head);
    ``parametrizations``: the newer ``...parametrizations.weight.original0/1`` spelling."""
    rules = [r for r in HF_RULES if "original" not in r[0] and "weight_g" not in r[0]]
    if parametrizations:
        rules += [r for r in HF_RULES if "original" in r[0]] + [(r"encoder\.pos_conv_embed\.conv\.(bias)", r"pos_conv.\1")]
    else:
        rules += [r for r in HF_RULES if "weight_g" in r[0]]
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("final_proj", "label_embs"))}
    return _inverse(state, rules)


def hf_config(cfg: HubertConfig) -> dict:
    """A Hugging Face ``config.json`` dict for ``cfg`` (the fields :func:`load_hubert` reads)."""
    return {
        "model_type": "hubert", "architectures": ["HubertModel"], "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.ffn_dim,
        "conv_dim": [c for c, _, _ in cfg.conv_layers], "conv_kernel": [k for _, k, _ in cfg.conv_layers],
        "conv_stride": [s for _, _, s in cfg.conv_layers], "num_conv_pos_embeddings": cfg.pos_conv_kernel,
        "num_conv_pos_embedding_groups": cfg.pos_conv_groups, "feat_extract_norm": "group",
        "do_stable_layer_norm": False, "hidden_act": "gelu", "conv_bias": False,
    }


def fairseq_config(cfg: HubertConfig) -> dict:
    """fairseq ``cfg["model"]`` fields for ``cfg`` (``conv_feature_layers`` as fairseq writes it)."""
    return {
        "_name": "hubert", "extractor_mode": "default", "conv_feature_layers": str([tuple(c) for c in cfg.conv_layers]),
        "encoder_embed_dim": cfg.dim, "encoder_layers": cfg.num_layers, "encoder_attention_heads": cfg.num_heads,
        "encoder_ffn_embed_dim": cfg.ffn_dim, "conv_pos": cfg.pos_conv_kernel, "conv_pos_groups": cfg.pos_conv_groups,
        "final_dim": cfg.final_dim, "layer_norm_first": False, "conv_bias": False,
    }


def _literal_list(text: str, path: Path) -> list:
    """fairseq's ``conv_feature_layers`` string (``"[(512,10,5)] + [(512,3,2)] * 4"``), evaluated
    safely: only lists, tuples, integers, ``+`` and ``*``."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(ast.dump(node))
    try:
        return list(ev(ast.parse(text, mode="eval")))
    except (SyntaxError, ValueError, TypeError):
        raise ModelFileError(f"{path}: cannot read conv_feature_layers {text[:80]!r}") from None


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "argparse.Namespace" in text:
            with torch.serialization.safe_globals([argparse.Namespace]):
                try:
                    return torch.load(path, map_location="cpu", weights_only=True)
                except Exception as again:
                    exc, text = again, str(again)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
        if found:
            raise ModelFileError(f"{path}: pickles {found.group(1)}, which weights_only loading refuses; re-save "
                                 "the checkpoint with plain dicts (torch.save({'model': sd, 'cfg': dict}))") from None
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """A ``.safetensors`` file as a dict of CPU tensors (8-byte header size, JSON header, data).

    Raises:
        ModelFileError: not a safetensors file, or a dtype this reader does not know.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
    except (struct.error, ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: not a safetensors file") from None
    body, out = memoryview(data)[8 + size :], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise ModelFileError(f"{path}: tensor {name} has dtype {info.get('dtype')}, not supported")
        begin, end = info["data_offsets"]
        raw = bytearray(body[begin:end])
        out[name] = torch.frombuffer(raw, dtype=_SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"]) if raw \
            else torch.zeros(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
    return out


def write_safetensors(state: dict[str, Tensor], path: str | os.PathLike) -> None:
    """Write ``state`` as ``.safetensors`` (for tests and conversions; float32/int64 tensors)."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name, tensor in state.items():
        raw = tensor.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


def _fairseq_model_config(ckpt: dict, path: Path) -> dict:
    cfg = ckpt.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return cfg["model"]
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    if isinstance(args, dict):
        return args
    raise ModelFileError(f"{path}: fairseq checkpoint without a model config ('cfg' or 'args')")


def _config_from_fairseq(model_cfg: dict, state: dict[str, Tensor], path: Path) -> HubertConfig:
    if model_cfg.get("extractor_mode", "default") != "default" or model_cfg.get("layer_norm_first", False):
        raise ModelFileError(f"{path}: only HuBERT Base-style models (extractor_mode default, post-LN) are supported")
    layers = _literal_list(str(model_cfg.get("conv_feature_layers", str(list(HubertConfig().conv_layers)))), path)
    label_embs = state.get("label_embs_concat")
    return HubertConfig(
        conv_layers=layers, dim=int(model_cfg.get("encoder_embed_dim", 768)),
        num_layers=int(model_cfg.get("encoder_layers", 12)), num_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        ffn_dim=int(model_cfg.get("encoder_ffn_embed_dim", 3072)), pos_conv_kernel=int(model_cfg.get("conv_pos", 128)),
        pos_conv_groups=int(model_cfg.get("conv_pos_groups", 16)), final_dim=int(model_cfg.get("final_dim", 256)),
        num_classes=int(label_embs.shape[0]) if label_embs is not None else 0,
    )


def _config_from_hf(cfg: dict, path: Path) -> HubertConfig:
    if cfg.get("feat_extract_norm", "group") != "group" or cfg.get("do_stable_layer_norm", False):
        raise ModelFileError(f"{path}: only HuBERT Base-style models (group norm extractor, post-LN) are supported")
    try:
        layers = list(zip(cfg["conv_dim"], cfg["conv_kernel"], cfg["conv_stride"]))
        return HubertConfig(conv_layers=layers, dim=int(cfg["hidden_size"]), num_layers=int(cfg["num_hidden_layers"]),
                            num_heads=int(cfg["num_attention_heads"]), ffn_dim=int(cfg["intermediate_size"]),
                            pos_conv_kernel=int(cfg["num_conv_pos_embeddings"]),
                            pos_conv_groups=int(cfg["num_conv_pos_embedding_groups"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: config.json lacks or mangles {exc}") from None


def _build(cfg: HubertConfig, state: dict[str, Tensor], unknown: list[str], path: Path) -> HubertModel:
    model = HubertModel(cfg)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(unknown) | (set(state) - expected))
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "") if keys else "none"
        raise ModelFileError(f"{path}: not a HuBERT checkpoint of the expected layout: missing keys {show(missing)}; "
                             f"unexpected keys {show(unexpected)}")
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: weights do not fit the model its config describes ({first[:160]})") from None
    return model.eval()


def load_hubert(path: str | os.PathLike) -> HubertModel:
    """A HuBERT encoder from a fairseq ``.pt`` file or a Hugging Face folder (or its weights file
    with ``config.json`` beside it), in eval mode on the CPU.

    Raises:
        ModelFileError: missing file, unreadable, a pickled class other than ``argparse.Namespace``,
            a foreign layout (the message names missing and unexpected keys), or weights that do not
            fit the config.
    """
    path = Path(path)
    if path.is_dir():
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()), None)
        if weights is None:
            raise ModelFileError(f"{path}: a Hugging Face folder needs model.safetensors or pytorch_model.bin")
        path = weights
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors" or (path.parent / "config.json").is_file() and path.name == "pytorch_model.bin":
        config_path = path.parent / "config.json"
        if not config_path.is_file():
            raise ModelFileError(f"{path}: no config.json beside it (Hugging Face layout)")
        try:
            hf_cfg = json.loads(config_path.read_text())
        except ValueError:
            raise ModelFileError(f"{config_path}: not valid JSON") from None
        state = read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path)
        if not isinstance(state, dict):
            raise ModelFileError(f"{path}: not a state dict")
        state = {k.removeprefix("hubert."): v for k, v in state.items()}
        renamed, unknown = _rename(state, HF_RULES)
        return _build(_config_from_hf(hf_cfg, config_path), renamed, unknown, path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ModelFileError(f"{path}: not a fairseq checkpoint (no 'model' state dict); for a Hugging Face "
                             "model pass its folder (config.json + weights)")
    state = ckpt["model"]
    renamed, unknown = _rename(state, FAIRSEQ_RULES)
    return _build(_config_from_fairseq(_fairseq_model_config(ckpt, path), state, path), renamed, unknown, path)
