"""Load a user's local pretrained AST checkpoint into :class:`~speechkit.models.respiratory.ast.AST`.

Two key layouts are read (``torch.load(..., weights_only=True)``: tensors only, no code):

* the original AST release (``audioset_10_10_0.4593.pth``, a DataParallel ``state_dict``):
  ``module.v.patch_embed.proj.weight``, ``module.v.pos_embed``, ``module.v.cls_token``,
  ``module.v.dist_token``, ``module.v.blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
  ``module.v.norm``, ``module.mlp_head.{0,1}`` (``module.v.head*``: DeiT's unused heads, ignored);
* Hugging Face ``MIT/ast-finetuned-audioset-10-10-0.4593`` (``pytorch_model.bin`` or a
  ``.safetensors`` file): ``audio_spectrogram_transformer.embeddings.{cls_token,
  distillation_token,position_embeddings,patch_embeddings.projection}``,
  ``...encoder.layer.N.{layernorm_before,attention.attention.{query,key,value},
  attention.output.dense,layernorm_after,intermediate.dense,output.dense}``,
  ``...layernorm``, ``classifier.{layernorm,dense}`` (q, k, v are fused into ``qkv``).

The positional grid is resized as AST does: the checkpoint's (f, t) grid (AudioSet: 12 x 101)
is centre-cropped along an axis where the model's grid is smaller and bilinearly interpolated
where it is larger (ICBHI 8 s: 12 x 79, a centre crop in time). The classification head is
loaded only when its class count matches (otherwise it keeps its fresh initialisation, as in
Patch-Mix CL).

Example:
    >>> from speechkit.models.respiratory.ast import AST
    >>> state = {"module.v." + k: v for k, v in AST(preset="tiny", input_frames=200).state_dict().items()
    ...          if not k.startswith("head")}
    >>> sorted(convert_original(state))[:2]
    ['blocks.0.attn.proj.bias', 'blocks.0.attn.proj.weight']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from speechkit.errors import ModelFileError

HF_PREFIX = "audio_spectrogram_transformer."
_HF_BLOCK = {
    "layernorm_before": "norm1", "attention.output.dense": "attn.proj", "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
}


def convert_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original AST keys (``module.v.*``, ``module.mlp_head.*``) -> :class:`AST` keys."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith("v.head"):  # DeiT's own heads: AST never uses them
            continue
        if key.startswith("v."):
            out[key[2:]] = value
        elif key.startswith("mlp_head."):
            out["head." + key[len("mlp_head."):]] = value
        else:
            out[key] = value
    return out


def convert_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``ASTForAudioClassification`` keys -> :class:`AST` keys (q, k, v fused)."""
    out, qkv = {}, {}
    for key, value in state.items():
        if key.startswith(HF_PREFIX + "embeddings."):
            name = key[len(HF_PREFIX + "embeddings."):]
            name = {"distillation_token": "dist_token", "position_embeddings": "pos_embed"}.get(name, name)
            out[name.replace("patch_embeddings.projection", "patch_embed.proj")] = value
        elif m := re.match(re.escape(HF_PREFIX) + r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key):
            layer, part, kind = m.groups()
            if part.startswith("attention.attention."):
                qkv.setdefault((layer, kind), {})[part.rsplit(".", 1)[-1]] = value
            else:
                out[f"blocks.{layer}.{_HF_BLOCK.get(part, part)}.{kind}"] = value
        elif key.startswith(HF_PREFIX + "layernorm."):
            out["norm." + key.rsplit(".", 1)[-1]] = value
        elif key.startswith("classifier."):
            out[key.replace("classifier.layernorm", "head.0").replace("classifier.dense", "head.1")] = value
        else:
            out[key] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) == {"query", "key", "value"}:
            out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
        else:
            out.update({f"blocks.{layer}.attention.{n}.{kind}": v for n, v in parts.items()})
    return out


def resize_pos_embed(pos_embed: Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]) -> Tensor:
    """(1, 2 + f*t, D) positional embeddings from the source (f, t) grid to the target grid.

    Each axis is centre-cropped when the target is smaller and bilinearly interpolated when it
    is larger (AST's ``__init__``); the two token embeddings are kept.
    """
    (fs, ts), (ft, tt) = source_grid, target_grid
    tokens, grid = pos_embed[:, :2], pos_embed[:, 2:]
    d = grid.shape[-1]
    grid = grid.reshape(1, fs, ts, d).permute(0, 3, 1, 2)  # (1, D, f, t)
    if tt <= ts:
        start = ts // 2 - tt // 2
        grid = grid[:, :, :, start : start + tt]
    if ft <= fs:
        start = fs // 2 - ft // 2
        grid = grid[:, :, start : start + ft, :]
    if grid.shape[2:] != (ft, tt):
        grid = nn.functional.interpolate(grid, size=(ft, tt), mode="bilinear", align_corners=False)
    return torch.cat([tokens, grid.permute(0, 2, 3, 1).reshape(1, ft * tt, d)], dim=1)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.bin`` (``weights_only``) or ``.safetensors`` file.

    Raises:
        ModelFileError: missing or unreadable file, or no tensor dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such AST checkpoint file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelFileError(f"{path}: reading .safetensors needs `pip install safetensors` "
                                 "(or use the pytorch_model.bin of the same model)") from None
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable tensor checkpoint ({reason[:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: expected a dict of tensors (an AST state_dict)")
    return state


def load_ast_checkpoint(model: nn.Module, path: str | os.PathLike, source_grid: tuple[int, int] | None = None) -> list[str]:
    """Copy a pretrained AST's weights into ``model`` (an :class:`AST` of the same width and depth).

    Args:
        model: the target AST.
        path: original-layout ``.pth`` or Hugging Face ``.bin``/``.safetensors``.
        source_grid: (f, t) of the checkpoint's positional grid; default: the model's frequency
            rows (12 for 128 bins) and the rest in time (AudioSet: 12 x 101).

    Returns:
        Notes on what was adapted (positional grid resized, head left fresh).

    Raises:
        ModelFileError: the file is not an AST checkpoint, or keys are missing / unexpected /
            of the wrong shape (the message names the first few).
    """
    state = read_state_dict(path)
    layout = "Hugging Face" if any(k.startswith(HF_PREFIX) for k in state) else "original"
    state = convert_hf(state) if layout == "Hugging Face" else convert_original(state)
    notes = [f"{layout} AST layout"]
    target = model.state_dict()
    pos = state.get("pos_embed")
    width = target["pos_embed"].shape[2]
    if pos is not None and pos.ndim == 3 and pos.shape[2] == width and pos.shape != target["pos_embed"].shape:
        num = pos.shape[1] - 2
        f = source_grid[0] if source_grid else model.grid[0]
        grid = source_grid or (f, num // f)
        if grid[0] * grid[1] != num:
            raise ModelFileError(f"{path}: pos_embed {tuple(pos.shape)} does not fit a {grid[0]} x {grid[1]} grid; "
                                 "pass source_grid")
        state["pos_embed"] = resize_pos_embed(pos, grid, model.grid)
        notes.append(f"positional grid {grid[0]}x{grid[1]} -> {model.grid[0]}x{model.grid[1]}")
    head = [k for k in ("head.1.weight", "head.1.bias") if k in state and state[k].shape != target[k].shape]
    if head:
        notes.append(f"head has {state['head.1.weight'].shape[0]} classes, the model {target['head.1.weight'].shape[0]}: "
                     "kept fresh")
        for k in head:
            state[k] = target[k]
    for k in target:  # a checkpoint without the AST head: the head stays fresh
        if k.startswith("head.") and k not in state:
            state[k] = target[k]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in target
             if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{name} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise ModelFileError(f"{path}: not an AST checkpoint of this size ({layout} layout): " + "; ".join(parts))
    model.load_state_dict(state)
    return notes
