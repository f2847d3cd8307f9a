"""SUPERB-style probes of a frozen speech encoder (issue 16): KWS, ASR and speaker identification.

As in SUPERB (Yang et al., Interspeech 2021), the upstream is frozen and a downstream model
learns a softmax-weighted sum of the upstream's layers plus a small head:

* **KS** keyword spotting: mean pooling over time + a linear layer, 12 classes in the Speech
  Commands v1 layout (manifests of ``speechkit prepare speech-commands --classes 12``); the
  ``_unknown_`` class is capped at the size of the largest keyword class in each split so that
  accuracy is not the unknown rate. Accuracy (%) on the test split (its speakers are not in
  training).
* **ASR**: a 1-layer BiLSTM + CTC over characters (``▁`` marks word starts), greedy decoding
  through the project's text rule (:func:`speechkit.decoding.ctc_text`); WER (%) on the test
  manifest (held-out voices when built as in the synthetic recipe).
* **SID** speaker identification: mean pooling + linear over the training speakers; each
  speaker's utterances are split (every ``sid_test_every``-th to test), since speaker
  identification is closed-set. Accuracy (%).

Upstream features are computed once per utterance (the upstream is frozen) and kept in memory:
meant for the small probe sets of the synthetic recipe and the int8 gate, not LibriSpeech-scale
runs (use s3prl's SUPERB downstreams for those; the ONNX feature extractor has s3prl's layout).

Upstreams (:func:`open_upstream`): ``logmel`` (80 log-mel bins, 10 ms: the baseline), ``random:CKPT``
(the architecture of CKPT, freshly initialised with seed 0), any SSL checkpoint
(:func:`speechkit.tasks.ssl.load_upstream`), or an exported ``.onnx`` feature extractor.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.data.asr_datamodule import cut_text, pad_waveforms
from speechkit.data.datamodules import load_cut_audio
from speechkit.data.manifests import cut_label, read_cuts
from speechkit.errors import CorpusError, SpeechkitError

WORD_START = "\u2581"
#: ASR probe units: blank, word start, letters, apostrophe.
CHAR_TOKENS = ["<blk>", WORD_START, *"ABCDEFGHIJKLMNOPQRSTUVWXYZ'"]


@dataclass
class Upstream:
    """A frozen feature extractor.

    Attributes:
        name: shown in the table.
        layers: ``fn(audio (B, S), audio_lens (B,)) -> ([L tensors (B, T, D)], lens (B,))``.
        num_params: parameters (0 for log-mel).
        macs_per_second: multiply-accumulates per second of 16 kHz audio (0 if unknown).
        sample_rate: input rate (Hz).
    """

    name: str
    layers: Callable[[Tensor, Tensor], tuple[list[Tensor], Tensor]]
    num_params: int
    macs_per_second: int
    sample_rate: int = 16000


def hubert_upstream(model, name: str) -> Upstream:
    """An :class:`Upstream` over a :class:`~speechkit.models.ssl.HubertModel`'s ``hidden`` (L + 1 layers)."""
    model = model.eval()

    @torch.no_grad()
    def layers(audio: Tensor, lens: Tensor):
        features = model.extract_features(audio, lens)
        return features.hidden, features.lens

    params = sum(p.numel() for p in model.parameters()) - sum(
        p.numel() for p in [model.label_embs, *(model.final_proj.parameters() if model.final_proj is not None else [])]
        if p is not None)
    return Upstream(name, layers, params, model.macs(model.config.sample_rate), model.config.sample_rate)


def logmel_upstream() -> Upstream:
    """The log-mel baseline: one 80-bin "layer" at 10 ms."""
    from speechkit.frontends import LogMel

    frontend = LogMel(n_mels=80, n_fft=512, win_length=400, hop_length=160).eval()

    @torch.no_grad()
    def layers(audio: Tensor, lens: Tensor):
        feats, feat_lens = frontend(audio, lens)
        return [feats], feat_lens

    return Upstream("log-mel", layers, 0, 0)


def onnx_upstream(path: str | os.PathLike) -> Upstream:
    """An exported feature extractor (:class:`speechkit.runtime.ssl.SslFeatureExtractor`), one utterance at a time."""
    from speechkit.runtime.ssl import SslFeatureExtractor

    extractor = SslFeatureExtractor(path)

    def layers(audio: Tensor, lens: Tensor):
        outs = [torch.from_numpy(extractor(audio[b, : int(n)].numpy())) for b, n in enumerate(lens.tolist())]
        frames = torch.tensor([o.shape[1] for o in outs])
        padded = torch.zeros(outs[0].shape[0], len(outs), int(frames.max()), outs[0].shape[-1])
        for b, o in enumerate(outs):
            padded[:, b, : o.shape[1]] = o
        return list(padded), frames

    return Upstream(Path(path).name, layers, 0, 0, extractor.sample_rate)


def open_upstream(spec: str, name: str | None = None) -> Upstream:
    """``logmel``, ``random:CKPT``, an ``.onnx`` feature extractor or an SSL checkpoint/folder.

    Raises:
        ModelFileError: the checkpoint cannot be read.
    """
    from speechkit.models.ssl.hubert import HubertModel
    from speechkit.tasks.ssl import load_upstream

    if spec == "logmel":
        return logmel_upstream()
    if spec.endswith(".onnx"):
        return onnx_upstream(spec)
    if spec.startswith("random:"):
        config = load_upstream(spec[len("random:"):]).config
        torch.manual_seed(0)
        return hubert_upstream(HubertModel(config), name or "random init")
    return hubert_upstream(load_upstream(spec), name or Path(spec).name)


# -- features ---------------------------------------------------------------------------------
@dataclass
class ProbeItem:
    audio: np.ndarray
    target: object  # class index (int) or transcript (str)


def extract(upstream: Upstream, items: Sequence[ProbeItem], batch_size: int = 8) -> list[Tensor]:
    """Every item's layers as one (L, T, D) tensor (upstream frozen, computed once)."""
    out: list[Tensor] = [None] * len(items)  # type: ignore[list-item]
    order = sorted(range(len(items)), key=lambda i: len(items[i].audio))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        audio, lens = pad_waveforms([items[i].audio for i in chunk])
        layers, frames = upstream.layers(audio, lens)
        stacked = torch.stack([x.float() for x in layers])  # (L, B, T, D)
        for j, i in enumerate(chunk):
            out[i] = stacked[:, j, : max(int(frames[j]), 1)].clone()
    return out


class WeightedSum(nn.Module):
    """Softmax-weighted sum of L layers (SUPERB's featurizer), each layer-normalised first."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: Tensor) -> Tensor:  # (L, B, T, D) -> (B, T, D)
        normed = nn.functional.layer_norm(layers, layers.shape[-1:])
        return (self.weights.softmax(0)[:, None, None, None] * normed).sum(0)


def _pad_layers(feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """[(L, T_i, D)] -> (L, B, T, D) zero-padded, (B,) lengths."""
    lens = torch.tensor([f.shape[1] for f in feats])
    out = torch.zeros(feats[0].shape[0], len(feats), int(lens.max()), feats[0].shape[-1])
    for b, f in enumerate(feats):
        out[:, b, : f.shape[1]] = f
    return out, lens


class PooledClassifier(nn.Module):
    """Weighted sum -> mean over valid frames -> linear: (L, B, T, D) -> (B, classes)."""

    def __init__(self, num_layers: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.featurizer, self.linear = WeightedSum(num_layers), nn.Linear(dim, num_classes)

    def forward(self, layers: Tensor, lens: Tensor) -> Tensor:
        x = self.featurizer(layers)
        valid = (torch.arange(x.shape[1])[None, :] < lens[:, None]).float()[..., None]
        return self.linear((x * valid).sum(1) / lens[:, None].clamp(min=1))


class CtcHead(nn.Module):
    """Weighted sum -> BiLSTM -> linear over :data:`CHAR_TOKENS`: (L, B, T, D) -> log-probs (B, T, V)."""

    def __init__(self, num_layers: int, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.featurizer = WeightedSum(num_layers)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(CHAR_TOKENS))

    def forward(self, layers: Tensor, lens: Tensor) -> Tensor:
        x = self.featurizer(layers)
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y).log_softmax(-1)


def encode_chars(text: str) -> list[int]:
    """Upper-case words -> :data:`CHAR_TOKENS` ids, ``▁`` before each word; other characters dropped."""
    index = {t: i for i, t in enumerate(CHAR_TOKENS)}
    ids = []
    for word in text.upper().split():
        ids.append(index[WORD_START])
        ids += [index[c] for c in word if c in index]
    return ids


# -- training and scoring ---------------------------------------------------------------------
@dataclass
class ProbeConfig:
    """Downstream training: AdamW over the cached features; ``asr_epochs`` for the (costlier) BiLSTM."""

    epochs: int = 40
    asr_epochs: int = 20
    lr: float = 2e-3
    batch_size: int = 16
    seed: int = 0


def train_classifier(feats: list[Tensor], targets: list[int], num_classes: int, cfg: ProbeConfig) -> PooledClassifier:
    torch.manual_seed(cfg.seed)
    model = PooledClassifier(feats[0].shape[0], feats[0].shape[-1], num_classes)
    _fit(model, feats, cfg, lambda out, idx: nn.functional.cross_entropy(out, torch.tensor([targets[i] for i in idx])))
    return model.eval()


def classifier_accuracy(model: PooledClassifier, feats: list[Tensor], targets: list[int]) -> float:
    with torch.no_grad():
        layers, lens = _pad_layers(feats)
        pred = model(layers, lens).argmax(-1)
    return 100.0 * float((pred == torch.tensor(targets)).float().mean())


def train_ctc(feats: list[Tensor], texts: list[str], cfg: ProbeConfig) -> CtcHead:
    torch.manual_seed(cfg.seed)
    model = CtcHead(feats[0].shape[0], feats[0].shape[-1])
    tokens = [encode_chars(t) for t in texts]

    def loss_fn(log_probs: Tensor, idx: list[int]) -> Tensor:
        targets = [torch.tensor(tokens[i]) for i in idx]
        lens = torch.tensor([feats[i].shape[1] for i in idx])
        return nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), lens,
                                      torch.tensor([len(t) for t in targets]), zero_infinity=True)

    _fit(model, feats, replace(cfg, epochs=cfg.asr_epochs), loss_fn)
    return model.eval()


def ctc_error_rates(model: CtcHead, feats: list[Tensor], texts: list[str]) -> tuple[float, float]:
    """(WER %, CER %) of greedy CTC decoding through :func:`speechkit.decoding.ctc_text`; the CER
    scores the same hypotheses letter by letter (spaces count as a symbol)."""
    from speechkit.decoding import ctc_text
    from speechkit.metrics.wer import corpus_word_errors

    hyps = []
    with torch.no_grad():
        for f in feats:
            log_probs = model(f[:, None], torch.tensor([f.shape[1]]))[0]
            hyps.append(ctc_text(log_probs.numpy(), CHAR_TOKENS))
    refs = [" ".join(t.upper().split()) for t in texts]
    def letters(text: str) -> str:
        return " ".join(text.replace(" ", "_"))
    chars = corpus_word_errors([letters(r) for r in refs], [letters(h) for h in hyps])
    return 100.0 * corpus_word_errors(refs, hyps).wer, 100.0 * chars.wer


def _fit(model: nn.Module, feats: list[Tensor], cfg: ProbeConfig, loss_fn) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = random.Random(cfg.seed)
    order = list(range(len(feats)))
    for _ in range(cfg.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            layers, lens = _pad_layers([feats[i] for i in idx])
            loss = loss_fn(model(layers, lens), idx)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()


# -- data -------------------------------------------------------------------------------------
def _cuts(path: Path, sample_rate: int) -> list:
    return list(read_cuts(path, hint="prepare it with `speechkit prepare`"))


def kws_items(manifest_dir: str | os.PathLike, split: str, sample_rate: int = 16000,
              limit: int = 0) -> tuple[list[ProbeItem], list[str]]:
    """Clips of a 12-class Speech Commands split, ``_unknown_`` capped (module docstring)."""
    from speechkit.data.manifests import read_labels

    folder = Path(manifest_dir)
    labels = read_labels(folder, hint="prepare it with `speechkit prepare speech-commands --classes 12`")
    cuts = _cuts(folder / f"cuts_{split}.jsonl.gz", sample_rate)
    by_label: dict[str, list] = {}
    for cut in cuts:
        by_label.setdefault(cut_label(cut), []).append(cut)
    cap = max(len(v) for k, v in by_label.items() if not k.startswith("_")) if len(by_label) > 2 else 0
    if limit:
        cap = min(cap, limit) if cap else limit
    index = {name: i for i, name in enumerate(labels)}
    items = []
    for label, group in sorted(by_label.items()):
        if label not in index:
            raise CorpusError(f"{folder}: label {label!r} is not in labels.json")
        for cut in group[:cap] if cap else group:
            items.append(ProbeItem(_fixed(load_cut_audio(cut, sample_rate), sample_rate), index[label]))
    return items, labels


def _fixed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """1 s clips (Speech Commands clips may be shorter)."""
    out = np.zeros(sample_rate, dtype=np.float32)
    out[: min(len(audio), sample_rate)] = audio[:sample_rate]
    return out


def asr_items(manifest: str | os.PathLike, sample_rate: int = 16000, limit: int = 0) -> list[ProbeItem]:
    """Utterances and transcripts of a LibriSpeech-layout cuts manifest."""
    from speechkit.text.normalize import normalize_text

    cuts = _cuts(Path(manifest), sample_rate)[: limit or None]
    return [ProbeItem(load_cut_audio(c, sample_rate), normalize_text(cut_text(c), c.id)) for c in cuts]


def sid_items(manifest: str | os.PathLike, sample_rate: int = 16000, test_every: int = 4,
              max_seconds: float = 4.0) -> tuple[list[ProbeItem], list[ProbeItem], list[str]]:
    """Train/test utterances of the manifest's speakers (every ``test_every``-th to test), cut to ``max_seconds``."""
    cuts = _cuts(Path(manifest), sample_rate)
    speakers = sorted({c.supervisions[0].speaker for c in cuts})
    if len(speakers) < 2:
        raise CorpusError(f"{manifest}: speaker identification needs at least 2 speakers, found {len(speakers)}")
    index, seen = {s: i for i, s in enumerate(speakers)}, {}
    train, test = [], []
    for cut in cuts:
        spk = cut.supervisions[0].speaker
        seen[spk] = seen.get(spk, 0) + 1
        audio = load_cut_audio(cut, sample_rate)[: int(max_seconds * sample_rate)]
        (test if seen[spk] % test_every == 0 else train).append(ProbeItem(audio, index[spk]))
    return train, test, speakers


# -- the table --------------------------------------------------------------------------------
@dataclass
class ProbeData:
    """Probe sets (each optional): KWS manifest folder; ASR train/test manifests; SID manifest."""

    kws_dir: str = ""
    asr_train: str = ""
    asr_test: str = ""
    sid_manifest: str = ""
    limit: int = 0


def probe_kws(upstream: Upstream, data: ProbeData, cfg: ProbeConfig) -> float:
    train, labels = kws_items(data.kws_dir, "train", upstream.sample_rate, data.limit)
    test, _ = kws_items(data.kws_dir, "test", upstream.sample_rate)
    model = train_classifier(extract(upstream, train), [i.target for i in train], len(labels), cfg)
    return classifier_accuracy(model, extract(upstream, test), [i.target for i in test])


def probe_asr(upstream: Upstream, data: ProbeData, cfg: ProbeConfig) -> tuple[float, float]:
    """(WER %, CER %) on the test manifest."""
    train, test = asr_items(data.asr_train, upstream.sample_rate, data.limit), asr_items(data.asr_test, upstream.sample_rate)
    model = train_ctc(extract(upstream, train), [i.target for i in train], cfg)
    return ctc_error_rates(model, extract(upstream, test), [i.target for i in test])


def probe_sid(upstream: Upstream, data: ProbeData, cfg: ProbeConfig) -> float:
    train, test, speakers = sid_items(data.sid_manifest, upstream.sample_rate)
    model = train_classifier(extract(upstream, train), [i.target for i in train], len(speakers), cfg)
    return classifier_accuracy(model, extract(upstream, test), [i.target for i in test])


def run_probes(upstreams: Sequence[Upstream], data: ProbeData, cfg: ProbeConfig,
               log: Callable[[str], None] = print) -> list[dict]:
    """One row per upstream: name, parameters, MACs/s and the metric of each probe with data."""
    if not (data.kws_dir or (data.asr_train and data.asr_test) or data.sid_manifest):
        raise SpeechkitError("no probe data: give --kws, --asr-train and --asr-test, and/or --sid")
    rows = []
    for upstream in upstreams:
        row = {"upstream": upstream.name, "params": upstream.num_params, "macs_per_s": upstream.macs_per_second}
        if data.kws_dir:
            row["kws_acc"] = probe_kws(upstream, data, cfg)
        if data.asr_train and data.asr_test:
            row["asr_wer"], row["asr_cer"] = probe_asr(upstream, data, cfg)
        if data.sid_manifest:
            row["sid_acc"] = probe_sid(upstream, data, cfg)
        log(f"probed {upstream.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float)))
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """A Markdown table of :func:`run_probes` rows."""
    columns = [("upstream", "upstream", "{}"), ("params", "params (M)", None), ("macs_per_s", "GMACs / s audio", None),
               ("kws_acc", "KS acc % (up)", "{:.1f}"), ("asr_wer", "ASR WER % (down)", "{:.1f}"),
               ("asr_cer", "ASR CER % (down)", "{:.1f}"),
               ("sid_acc", "SID acc % (up)", "{:.1f}")]
    columns = [c for c in columns if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(c[1] for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if key == "params":
                cells.append(f"{value / 1e6:.2f}" if value else "0")
            elif key == "macs_per_s":
                cells.append(f"{value / 1e9:.3f}" if value else "n/a")
            else:
                cells.append(fmt.format(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
