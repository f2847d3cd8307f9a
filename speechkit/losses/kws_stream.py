"""Stream objectives for keyword spotting: a target for every frame, from where the keyword lies.

A streaming detector scores every frame ``t`` from the audio of the window that ends there. A
training item is ``context + clip`` samples of composed audio with the keyword (if any) at
samples ``[kw_start, kw_end)``; :func:`frame_targets` gives each frame the label the detector
should output at that moment:

* the keyword, once the whole keyword lies inside the frame's window (it has **ended**);
* ``unknown`` while the keyword has started but not ended (a detector must wait for the end of
  the word: "lef" is not "left"), before it starts, and once less than half of it is left in
  the window;
* ignored (-100) in two fuzzy bands: the last ``end_tolerance_s`` before the keyword ends (its
  trailing sounds are quiet) and while more than half of it is still in a window that has lost
  its start;
* the item's label at every frame for items without a keyword (running speech, near misses,
  partial words, noise).

Frames whose window is not entirely inside the item are ignored. :class:`StreamKwsLoss` turns
those targets into a loss: per-frame cross-entropy (``mode="frames"``), max-pooling for the
keyword frames (``mode="maxpool"``: only the keyword frame with the highest keyword probability
is pushed up, as in Sun et al., "Max-pooling loss training of long short-term memory networks
for small-footprint keyword spotting", SLT 2016; every non-keyword frame is pushed down), or the
last frame only (``mode="last"``: the clip view).

Shapes: B items, T frames, C classes, S samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

IGNORE = -100


def frame_targets(
    labels: Tensor,
    kw_start: Tensor,
    kw_end: Tensor,
    num_frames: int,
    hop_samples: int,
    frame_samples: int,
    window_samples: int,
    unknown_index: int,
    end_tolerance_samples: int = 1600,
    kw_labels: Tensor | None = None,
) -> Tensor:
    """Per-frame class targets of a batch (see the module docstring for the rule).

    Args:
        labels: (B,) int64 class of each item's last window.
        kw_start, kw_end: (B,) int64 keyword span in samples, -1 for items without a keyword.
        num_frames: T, frames of the items' features.
        hop_samples: samples between frames.
        frame_samples: samples a frame covers; frame ``t`` ends at ``t * hop + frame_samples``
            (a front-end without centre padding).
        window_samples: samples of the window a detector score looks at (the clip length).
        unknown_index: class index of ``_unknown_``.
        end_tolerance_samples: samples before the keyword's end whose frames are ignored.
        kw_labels: (B,) class of the keyword at ``[kw_start, kw_end)``; ``None``: ``labels``
            (an item whose last window lost the keyword is labelled ``_unknown_``, yet its
            earlier frames heard the whole keyword).

    Returns:
        (B, T) int64 targets, :data:`IGNORE` where no target applies.

    Example:
        >>> t = frame_targets(torch.tensor([2, 0]), torch.tensor([6000, -1]), torch.tensor([10000, -1]),
        ...                   num_frames=8, hop_samples=2000, frame_samples=2000, window_samples=8000,
        ...                   unknown_index=1, end_tolerance_samples=1000)
        >>> t.tolist()
        [[-100, -100, -100, 1, 2, 2, 2, -100], [-100, -100, -100, 0, 0, 0, 0, 0]]
    """
    device = labels.device
    ends = torch.arange(num_frames, device=device) * hop_samples + frame_samples  # (T,)
    starts = ends - window_samples
    labels_ = labels[:, None].expand(-1, num_frames)
    targets = labels_.clone()
    kw_labels_ = labels_ if kw_labels is None else kw_labels[:, None].expand(-1, num_frames)
    has_kw = (kw_start >= 0)[:, None]
    ks, ke = kw_start[:, None], kw_end[:, None]
    length = (ke - ks).clamp(min=1)
    inside = (ks >= starts) & (ke <= ends)
    not_ended = ends < ke
    fuzzy_end = not_ended & (ends >= ke - end_tolerance_samples) & (ks >= starts)
    left_in_window = (ke - starts).clamp(min=0)
    lost_start = ks < starts
    mostly_gone = lost_start & (left_in_window * 2 < length)
    kw_targets = torch.full_like(targets, unknown_index)
    kw_targets = torch.where(inside, kw_labels_, kw_targets)
    kw_targets = torch.where(fuzzy_end | (lost_start & ~mostly_gone & ~not_ended), IGNORE, kw_targets)
    kw_targets = torch.where(lost_start & ~mostly_gone & not_ended, IGNORE, kw_targets)
    targets = torch.where(has_kw, kw_targets, targets)
    return targets.masked_fill((starts < 0)[None, :], IGNORE)


class StreamKwsLoss(nn.Module):
    """Loss over per-frame pooled logits with :func:`frame_targets`.

    ``loss(frame_logits (B, T, C), batch) -> (loss, stats)``; ``batch`` has ``labels``,
    ``kw_start``, ``kw_end`` and optionally ``kw_labels`` ((B,) int64). Clip logits (B, C)
    (validation and test clips) and batches without ``kw_start`` are scored as one window.

    Args:
        mode: ``frames``, ``maxpool`` or ``last`` (module docstring).
        unknown_index: class index of ``_unknown_`` (the task sets it from its labels).
        hop_samples, frame_samples, window_samples: the front-end's frame geometry and the
            window a score looks at (the task sets them).
        end_tolerance_s: seconds before a keyword's end whose frames are ignored.
        label_smoothing: cross-entropy label smoothing.
        keyword_share: share of the loss weight the keyword frames of a batch get (the rest
            goes to every other scored frame), or ``None`` for plain per-frame averaging. A
            keyword is heard in far fewer frames than it is not (it must have ended and still
            be in the window), so plain averaging teaches a detector that nothing is ever a
            keyword; 0.5 weighs both sides equally.

    Example:
        >>> loss_fn = StreamKwsLoss("maxpool", unknown_index=1, hop_samples=2000, frame_samples=2000,
        ...                         window_samples=8000, end_tolerance_s=0.0625)
        >>> batch = {"labels": torch.tensor([2]), "kw_start": torch.tensor([4000]), "kw_end": torch.tensor([8000])}
        >>> loss, stats = loss_fn(torch.zeros(1, 8, 3), batch)
        >>> round(loss.item(), 4), sorted(stats)
        (1.0986, ['keyword_frames', 'loss'])
    """

    def __init__(
        self,
        mode: str = "frames",
        unknown_index: int = 1,
        hop_samples: int = 160,
        frame_samples: int = 512,
        window_samples: int = 16000,
        end_tolerance_s: float = 0.1,
        label_smoothing: float = 0.0,
        sample_rate: int = 16000,
        keyword_share: float | None = 0.5,
    ) -> None:
        super().__init__()
        if mode not in ("frames", "maxpool", "last"):
            raise ValueError(f"StreamKwsLoss: mode must be 'frames', 'maxpool' or 'last', got {mode!r}")
        self.mode = mode
        self.unknown_index = unknown_index
        self.hop_samples = hop_samples
        self.frame_samples = frame_samples
        self.window_samples = window_samples
        self.end_tolerance_samples = int(round(end_tolerance_s * sample_rate))
        self.label_smoothing = label_smoothing
        if keyword_share is not None and not 0.0 < keyword_share < 1.0:
            raise ValueError(f"StreamKwsLoss: keyword_share must be in (0, 1) or None, got {keyword_share}")
        self.keyword_share = keyword_share

    def forward(self, frame_logits: Tensor, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        labels = batch["labels"]
        if frame_logits.dim() == 2:  # clip logits (B, C): a validation or test clip
            loss = nn.functional.cross_entropy(frame_logits, labels, label_smoothing=self.label_smoothing)
            return loss, {"loss": loss.detach()}
        if self.mode == "last" or "kw_start" not in batch:
            loss = nn.functional.cross_entropy(frame_logits[:, -1], labels, label_smoothing=self.label_smoothing)
            return loss, {"loss": loss.detach()}
        b, t, c = frame_logits.shape
        targets = frame_targets(
            labels, batch["kw_start"], batch["kw_end"], t, self.hop_samples, self.frame_samples,
            self.window_samples, self.unknown_index, self.end_tolerance_samples, batch.get("kw_labels"),
        )
        kw_labels = batch.get("kw_labels", labels)
        is_kw_frame = (batch["kw_start"] >= 0)[:, None] & (targets == kw_labels[:, None]) & (kw_labels != self.unknown_index)[:, None]
        stats: dict[str, Tensor] = {"keyword_frames": is_kw_frame.float().sum().detach()}
        if self.mode == "maxpool":
            # Keep, per keyword item, only its best keyword frame; the item's other keyword
            # frames are ignored (the detector needs the keyword to peak once, not everywhere).
            logp = frame_logits.log_softmax(-1).gather(-1, kw_labels[:, None, None].expand(-1, t, 1)).squeeze(-1)
            masked = logp.masked_fill(~is_kw_frame, float("-inf"))
            best = masked.argmax(dim=1)  # (B,)
            keep = torch.zeros_like(is_kw_frame)
            keep[torch.arange(b, device=keep.device), best] = True
            targets = torch.where(is_kw_frame & ~keep, IGNORE, targets)
        flat = targets.reshape(-1)
        if bool((flat == IGNORE).all()):
            loss = frame_logits.sum() * 0.0
        else:
            per_frame = nn.functional.cross_entropy(
                frame_logits.reshape(b * t, c), flat, ignore_index=IGNORE, label_smoothing=self.label_smoothing,
                reduction="none",
            )
            scored = flat != IGNORE
            kw = (is_kw_frame.reshape(-1) & scored).float()
            other = (scored & ~is_kw_frame.reshape(-1)).float()
            n_kw, n_other = kw.sum(), other.sum()
            if self.keyword_share is None or n_kw == 0 or n_other == 0:
                loss = (per_frame * scored.float()).sum() / scored.float().sum()
            else:
                loss = (self.keyword_share * (per_frame * kw).sum() / n_kw
                        + (1.0 - self.keyword_share) * (per_frame * other).sum() / n_other)
        stats["loss"] = loss.detach()
        return loss, stats


__all__ = ["StreamKwsLoss", "frame_targets", "IGNORE"]
