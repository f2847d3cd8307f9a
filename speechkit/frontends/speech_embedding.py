"""A frozen front-end trained on real speech: Google's ``speech_embedding`` as shipped by openWakeWord 0.4.0.

:class:`SpeechEmbedding` reproduces openWakeWord's ``AudioFeatures`` pipeline (``openwakeword/utils.py``)
in torch, from the two ONNX files of the openwakeword 0.4.0 wheel:

1. ``melspectrogram.onnx``: audio scaled to the int16 range (``audio * 32768``; the wheel expects
   int16 samples as floats), a 512-sample STFT as a strided convolution (hop 160, no padding:
   ``T = 1 + (S - 512) // 160`` frames, 97 per second), power, a 32-band mel matrix,
   ``10 * log10(max(mel, 1e-10))``, clipped below at 80 dB under the clip's maximum; then
   openWakeWord's post-transform ``x / 10 + 2``.
2. ``embedding_model.onnx`` (``speech_embedding``, converted from TF Hub by tf2onnx): a stack of
   convolutions (BatchNorm folded in, LeakyReLU 0.2, ``max(x, -0.4)``) and max-pools that maps a
   76-frame mel window (0.775 s) to a 96-d vector. Windows start every 8 mel frames (80 ms):
   ``T' = 1 + (T - 76) // 8`` embeddings, 3 for a 1 s clip.

The weights are read from the ONNX initializers at construction and held in **non-persistent
buffers**: the module has no parameters (nothing to train, nothing in a checkpoint's
``state_dict``), it stays in eval mode whatever ``train()`` is asked, and it exports to ONNX inside
a model graph like the other front-ends. The files are found through
``importlib.util.find_spec("openwakeword")`` without importing the package (whose own dependencies,
scikit-learn, scipy and tqdm, are not needed): install them with
``pip install --no-deps openwakeword==0.4.0``, or pass ``model_dir`` (the folder holding the two files).

Licence. The openwakeword package's code is Apache-2.0 (its ``LICENSE``). **Its README states that
"all of the included pre-trained models are licensed under the Creative Commons
Attribution-NonCommercial-ShareAlike 4.0 International license" (CC BY-NC-SA 4.0)**; the same README
says that the embedding backbone is Google's ``speech_embedding``
(https://tfhub.dev/google/speech_embedding/1), which Google publishes under Apache-2.0, and which
openWakeWord re-implemented and converted. ``melspectrogram.onnx`` holds no learned weights (an STFT
and a mel matrix). Whether ``embedding_model.onnx`` as shipped in the wheel is covered by the README's
CC BY-NC-SA 4.0 statement or only by Google's Apache-2.0 is not settled by these texts: treat models
built on this front-end as **possibly non-commercial** until that is clarified. Nothing of the files
is copied into this repository or into checkpoints; an exported ONNX artifact does contain the
weights.

Contract (the feature front-end contract of :mod:`speechkit.frontends.spectral`)::

    forward(audio (B, S) float32 16 kHz in [-1, 1], audio_lens (B,) int64 | None)
        -> (feats (B, T', 96) float32, feat_lens (B,) int64)
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.frontends.spectral import frames_after_padding, full_lengths, mask_after

#: The two files the wheel ships under ``openwakeword/resources/models``.
MELSPEC_FILE = "melspectrogram.onnx"
EMBEDDING_FILE = "embedding_model.onnx"
INSTALL_HINT = "pip install --no-deps openwakeword==0.4.0"

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 160
N_MELS = 32
WINDOW_FRAMES = 76  # mel frames per embedding (0.775 s)
STEP_FRAMES = 8  # mel frames between embeddings (80 ms)
EMBEDDING_DIM = 96
INT16_SCALE = 32768.0  # [-1, 1) floats (soundfile's convention) -> the int16 range the wheel expects
TOP_DB = 80.0
AMIN = 1e-10


def openwakeword_model_dir() -> Path:
    """The wheel's ``openwakeword/resources/models`` folder, found without importing the package.

    Raises:
        SpeechkitError: openwakeword is not installed.
    """
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechkitError(
            f"SpeechEmbedding needs the speech_embedding ONNX files of openwakeword 0.4.0: run `{INSTALL_HINT}` "
            "or pass model_dir (the folder holding melspectrogram.onnx and embedding_model.onnx)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"


def _load_graph(path: Path):
    """(nodes, {initializer name: float32 tensor}) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise SpeechkitError(
            f"{path}: no such file; SpeechEmbedding needs openwakeword 0.4.0's ONNX files: run `{INSTALL_HINT}` "
            "or pass model_dir (the folder holding melspectrogram.onnx and embedding_model.onnx)"
        )
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, google.protobuf errors, OSError
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from exc
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    return list(model.graph.node), inits


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _expect(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ModelFileError(f"{path}: not openwakeword 0.4.0's file ({what}); run `{INSTALL_HINT}`")


def _read_melspec(path: Path) -> tuple[Tensor, Tensor]:
    """The STFT kernels ``(2 * 257, 1, 512)`` (real rows, then imaginary) and mel matrix ``(257, 32)``."""
    nodes, inits = _load_graph(path)
    real, imag = inits.get("0.stft.conv_real.weight"), inits.get("0.stft.conv_imag.weight")
    mel = inits.get("1.melW")
    _expect(real is not None and imag is not None and mel is not None, path, "STFT or mel weights missing")
    n_bins = N_FFT // 2 + 1
    _expect(tuple(real.shape) == tuple(imag.shape) == (n_bins, 1, N_FFT), path, f"STFT kernels {tuple(real.shape)}")
    _expect(tuple(mel.shape) == (n_bins, N_MELS), path, f"mel matrix {tuple(mel.shape)}")
    convs = [n for n in nodes if n.op_type == "Conv"]
    _expect(len(convs) == 2 and all(_attrs(n).get("strides") == [HOP] for n in convs), path, "STFT hop")
    return torch.cat([real, imag], dim=0).float(), mel.float()


def _read_embedding(path: Path) -> list[tuple]:
    """The embedding network as a chain of ``(op, *tensors_or_values)`` steps (NCHW).

    The tf2onnx graph is a single chain: Pad (width by 1 each side) + Reshape (NHWC -> NCHW, one
    channel), then Conv (BatchNorm folded or as a separate BatchNormalization), Relu, LeakyRelu,
    Max with a constant, MaxPool, and a final Reshape to 96 values.
    """
    nodes, inits = _load_graph(path)
    steps: list[tuple] = []
    _expect(nodes and nodes[0].op_type == "Pad" and nodes[1].op_type == "Reshape", path, "graph start")
    pads = inits.get(nodes[0].input[1])
    _expect(pads is not None and pads.tolist() == [0, 0, 1, 0, 0, 0, 1, 0], path, "input padding")
    for node in nodes[2:]:
        op, attrs = node.op_type, _attrs(node)
        if op == "Conv":
            weight = inits[node.input[1]].float()
            bias = inits[node.input[2]].float() if len(node.input) > 2 and node.input[2] else None
            p = attrs.get("pads", [0, 0, 0, 0])
            _expect(p[:2] == p[2:] and attrs.get("strides", [1, 1]) == [1, 1] and attrs.get("group", 1) == 1,
                    path, f"convolution {node.name}")
            steps.append(("conv", weight, bias, (int(p[0]), int(p[1]))))
        elif op == "BatchNormalization":
            scale, shift, mean, var = (inits[name].float() for name in node.input[1:5])
            mul = scale / torch.sqrt(var + attrs.get("epsilon", 1e-5))
            steps.append(("affine", mul[None, :, None, None], (shift - mean * mul)[None, :, None, None]))
        elif op == "Relu":
            steps.append(("relu",))
        elif op == "LeakyRelu":
            steps.append(("leaky", float(attrs.get("alpha", 0.01))))
        elif op == "Max":
            const = inits.get(node.input[1])
            _expect(const is not None and const.numel() == 1, path, f"Max node {node.name}")
            steps.append(("floor", float(const.reshape(()))))
        elif op == "MaxPool":
            _expect(not any(attrs.get("pads", [0])), path, f"padded max-pool {node.name}")
            steps.append(("maxpool", tuple(attrs["kernel_shape"]), tuple(attrs["strides"])))
        elif op == "Reshape" and node is nodes[-1]:
            pass  # (N, 96, 1, 1) -> (N, 1, 1, 96): flattened in forward
        else:
            _expect(False, path, f"unexpected {op} node {node.name}")
    _expect(steps[-1][0] == "conv" and steps[-1][1].shape[0] == EMBEDDING_DIM, path, "96-d output")
    return steps


class SpeechEmbedding(nn.Module):
    """openWakeWord 0.4.0's mel + ``speech_embedding`` as a frozen torch front-end (see module docstring).

    Frames: ``T = max(0, 1 + (S - 512) // 160)`` mel frames, ``T' = max(0, 1 + (T - 76) // 8)``
    embeddings (16000 samples -> 97 -> 3). Audio shorter than 12512 samples (0.78 s) gives none.

    Args:
        model_dir: folder holding ``melspectrogram.onnx`` and ``embedding_model.onnx``; None looks in
            the installed openwakeword wheel (``pip install --no-deps openwakeword==0.4.0``).
        sample_rate: must be 16000 (the model's rate); recorded so that exporters see it.

    Raises:
        SpeechkitError: the files are not there (the message names the pip command).
        ModelFileError: a file is unreadable or is not the 0.4.0 model.

    Example:
        >>> fe = SpeechEmbedding()
        >>> feats, feat_lens = fe(0.1 * torch.randn(2, 16000), torch.tensor([16000, 14000]))
        >>> tuple(feats.shape), feat_lens.tolist(), fe.num_frames(32000)
        ((2, 3, 96), [3, 2], 16)
        >>> sum(p.numel() for p in fe.parameters()), len(fe.state_dict()), fe.train().training
        (0, 0, False)
    """

    def __init__(self, model_dir: str | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        if int(sample_rate) != SAMPLE_RATE:
            raise SpeechkitError(f"SpeechEmbedding runs at {SAMPLE_RATE} Hz only, got sample_rate={sample_rate}")
        folder = Path(model_dir).expanduser() if model_dir is not None else openwakeword_model_dir()
        stft, mel = _read_melspec(folder / MELSPEC_FILE)
        steps = _read_embedding(folder / EMBEDDING_FILE)
        self._config = {"model_dir": None if model_dir is None else str(model_dir), "sample_rate": SAMPLE_RATE}
        self.feature_dim = EMBEDDING_DIM
        # Non-persistent buffers: they follow .to(device) but stay out of state_dict / checkpoints.
        self.register_buffer("stft_kernel", stft, persistent=False)
        self.register_buffer("mel_fb", mel, persistent=False)
        self._steps: list[tuple] = []
        for i, step in enumerate(steps):
            names = []
            for j, value in enumerate(step[1:]):
                if isinstance(value, Tensor):
                    self.register_buffer(f"w{i}_{j}", value, persistent=False)
                    names.append(f"w{i}_{j}")
                else:
                    names.append(value)
            self._steps.append((step[0], *names))
        super().train(False)

    def train(self, mode: bool = True) -> SpeechEmbedding:
        """Always eval mode: the front-end is frozen (``mode`` is ignored)."""
        return super().train(False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``SpeechEmbedding(**fe.config())`` rebuilds it."""
        return dict(self._config)

    def num_frames(self, num_samples: int) -> int:
        """Embedding frames for ``num_samples`` samples (the formula in the class docstring)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return self._num_frames(num_samples)

    @staticmethod
    def _num_mel_frames(num_samples):
        return frames_after_padding(num_samples, N_FFT, HOP)

    def _num_frames(self, num_samples):
        return frames_after_padding(self._num_mel_frames(num_samples), WINDOW_FRAMES, STEP_FRAMES)

    def melspectrogram(self, audio: Tensor, mel_lens: Tensor | None = None) -> Tensor:
        """openWakeWord's mel features, post-transform included.

        Args:
            audio: (B, S) float32 in [-1, 1].
            mel_lens: (B,) int64 valid mel frames; the 80 dB floor is taken under the maximum of
                those frames only. None: all frames.

        Returns:
            (B, T, 32) float32, ``T = 1 + (S - 512) // 160``: ``dB / 10 + 2``.
        """
        spec = F.conv1d(audio[:, None, :] * INT16_SCALE, self.stft_kernel, stride=HOP)  # (B, 514, T)
        bins = spec.shape[1] // 2
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb)  # (B, T, 32)
        db = torch.log(torch.clamp(mel, min=AMIN)) * (10.0 / math.log(10.0))
        valid = db if mel_lens is None else mask_after(db, mel_lens, -math.inf)
        peak = valid.amax(dim=(1, 2), keepdim=True)
        return torch.maximum(db, peak - TOP_DB) / 10.0 + 2.0

    def embed_windows(self, windows: Tensor) -> Tensor:
        """The embedding network on mel windows.

        Args:
            windows: (N, 76, 32) post-transformed mel frames.

        Returns:
            (N, 96) float32.
        """
        x = F.pad(windows[:, None], (1, 1))  # (N, 1, 76, 34), the graph's zero padding of the mel axis
        for op, *args in self._steps:
            if op == "conv":
                weight, bias, padding = getattr(self, args[0]), args[1], args[2]
                x = F.conv2d(x, weight, None if bias is None else getattr(self, bias), padding=padding)
            elif op == "affine":
                x = x * getattr(self, args[0]) + getattr(self, args[1])
            elif op == "relu":
                x = torch.relu(x)
            elif op == "leaky":
                x = F.leaky_relu(x, args[0])
            elif op == "floor":
                x = torch.clamp(x, min=args[0])
            else:  # maxpool
                x = F.max_pool2d(x, args[0], args[1])
        return x.reshape(x.shape[0], EMBEDDING_DIM)

    def forward(self, audio: Tensor, audio_lens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Compute speech embeddings.

        Args:
            audio: (B, S) float32 samples at 16 kHz in [-1, 1]; values beyond ``audio_lens`` are ignored.
            audio_lens: (B,) int64 valid samples per item; None means all S.

        Returns:
            feats: (B, T', 96) embeddings, one per 80 ms; frames at or beyond ``feat_lens`` hold the
                embedding of digital silence.
            feat_lens: (B,) int64, ``num_frames(audio_lens)``.

        Raises:
            SpeechkitError: ``audio`` is not 2-D or shorter than one embedding window (12512 samples).
        """
        if audio.dim() != 2:
            raise SpeechkitError(f"SpeechEmbedding expects audio (batch, samples), got {tuple(audio.shape)}")
        if self._num_frames(audio.shape[1]) < 1:
            raise SpeechkitError(
                f"SpeechEmbedding needs at least {N_FFT + HOP * (WINDOW_FRAMES - 1)} samples (0.78 s at 16 kHz) "
                f"for one embedding, got {audio.shape[1]}"
            )
        padded = audio_lens is not None  # without lengths: no masks (no length constants in exports)
        audio_lens = full_lengths(audio, audio_lens)
        audio = audio.to(self.mel_fb.dtype)
        if padded:
            audio = mask_after(audio, audio_lens, 0.0)
        mel = self.melspectrogram(audio, self._num_mel_frames(audio_lens) if padded else None)
        n_windows = frames_after_padding(mel.shape[1], WINDOW_FRAMES, STEP_FRAMES)
        index = (torch.arange(n_windows, device=mel.device)[:, None] * STEP_FRAMES
                 + torch.arange(WINDOW_FRAMES, device=mel.device)[None, :])  # (T', 76)
        windows = mel[:, index]  # (B, T', 76, 32)
        batch = mel.shape[0]
        feats = self.embed_windows(windows.reshape(batch * n_windows, WINDOW_FRAMES, N_MELS))
        feats = feats.reshape(batch, n_windows, EMBEDDING_DIM)
        feat_lens = self._num_frames(audio_lens)
        if padded:
            silence = self.embed_windows(torch.full_like(mel[:1, :WINDOW_FRAMES], self._silence_mel()))
            valid = torch.arange(n_windows, device=feats.device)[None, :, None] < feat_lens[:, None, None]
            feats = torch.where(valid, feats, silence[None])
        return feats, feat_lens

    @staticmethod
    def _silence_mel() -> float:
        """The post-transformed mel value of a clip of digital silence (every bin at the 1e-10 floor)."""
        return 10.0 * math.log10(AMIN) / 10.0 + 2.0
