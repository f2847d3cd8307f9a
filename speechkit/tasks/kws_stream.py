"""Keyword spotting trained for streams: a streaming network scored the way the detector sees audio.

:class:`StreamingKwsTask` is a :class:`~speechkit.tasks.classification.ClassificationTask` whose
network streams (``speechkit.models.kws.StreamingBCResNet``: causal temporal convolutions and a
frame-level ring buffer before the pooling). Training items come from
:class:`speechkit.data.kws_stream.KWSStreamDataModule` (``context + clip`` samples of composed
running audio with the keyword span ``kw_start``/``kw_end``); every frame gets a target from
where the keyword lies (:mod:`speechkit.losses.kws_stream`). Validation and test score whole
clips at their last frame, which is what the detector computes at that moment, so ``val/acc`` /
``test/acc`` are clip accuracies comparable with the fixed-window model's.

Its exporter (``speechkit.export.kws_streaming``) writes the stateful streaming artifact beside
the fixed-window one.

Shapes: B batch, S samples, T frames, F feature bins, C classes.
"""

from __future__ import annotations

from torch import Tensor, nn

from speechkit.errors import SpeechkitError
from speechkit.losses.kws_stream import StreamKwsLoss
from speechkit.tasks.classification import ClassificationTask

UNKNOWN_LABEL = "_unknown_"


class StreamingKwsTask(ClassificationTask):
    """A :class:`ClassificationTask` over a network with ``frame_logits`` / ``streaming_forward``.

    Args:
        loss_mode: ``frames`` (per-frame cross-entropy), ``maxpool`` (max-pooling over each
            keyword's frames) or ``last`` (the window's last frame only); see
            :class:`~speechkit.losses.kws_stream.StreamKwsLoss`.
        end_tolerance_s: seconds before a keyword ends whose frames get no target.
        label_smoothing: cross-entropy label smoothing.
        keyword_share: share of the loss weight given to the frames that hear a keyword
            (:class:`~speechkit.losses.kws_stream.StreamKwsLoss`); ``None``: plain averaging.
        **kwargs: :class:`ClassificationTask` arguments (``model``, ``frontend``, ``labels``, ...).
            ``loss`` must be left unset: the loss is the stream loss above.

    Raises:
        SpeechkitError: the network cannot score frames, the front-end pads frames around their
            centre (a streaming front-end must not look ahead), or ``_unknown_`` is not a label.
    """

    def __init__(
        self,
        model: nn.Module,
        frontend: nn.Module,
        loss_mode: str = "frames",
        end_tolerance_s: float = 0.1,
        label_smoothing: float = 0.0,
        keyword_share: float | None = 0.5,
        **kwargs,
    ) -> None:
        if kwargs.pop("loss", None) is not None:
            raise SpeechkitError("StreamingKwsTask: the loss is the stream loss; set loss_mode instead of loss")
        if not hasattr(model, "frame_logits"):
            raise SpeechkitError(
                f"StreamingKwsTask: {type(model).__name__} has no frame_logits; use a streaming network "
                "such as speechkit.models.kws.StreamingBCResNet"
            )
        if getattr(frontend, "center", False):
            raise SpeechkitError(
                "StreamingKwsTask: the front-end pads frames around their centre (center: true), which looks "
                "ahead; set center: false so every frame ends where its samples end"
            )
        super().__init__(model=model, frontend=frontend, **kwargs)
        labels = self.labels
        if labels and UNKNOWN_LABEL not in labels:
            raise SpeechkitError(f"StreamingKwsTask: the labels {labels} have no {UNKNOWN_LABEL!r} class")
        config = frontend.config() if hasattr(frontend, "config") else {}
        self.loss_fn = StreamKwsLoss(
            mode=loss_mode,
            unknown_index=labels.index(UNKNOWN_LABEL) if labels else 0,
            hop_samples=int(config.get("hop_length", 160)),
            frame_samples=int(config.get("n_fft", 512)),
            window_samples=self.clip_samples,
            end_tolerance_s=end_tolerance_s,
            label_smoothing=label_smoothing,
            sample_rate=self.sample_rate,
            keyword_share=keyword_share,
        )

    def frame_logits(self, audio: Tensor, audio_lens: Tensor | None = None) -> Tensor:
        """audio (B, S) -> pooled logits at every frame (B, T, C)."""
        feats, feat_lens = self.frontend(audio, audio_lens)
        if self.training and self.specaugment is not None:
            feats = self.specaugment(feats, feat_lens)
        return self.model.frame_logits(feats)

    def step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        if stage != "train" or "kw_start" not in batch:
            return super().step(batch, stage)
        frame_logits = self.frame_logits(batch["audio"], batch.get("audio_lens"))
        loss, stats = self.loss_fn(frame_logits, batch)
        stats = dict(stats)
        stats["acc"] = (frame_logits[:, -1].argmax(-1) == batch["labels"]).float().mean()
        return loss, stats


__all__ = ["StreamingKwsTask", "UNKNOWN_LABEL"]
