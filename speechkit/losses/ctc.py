"""CTC objective (Graves et al. 2006) over encoder log-probabilities, kept apart from the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError


def min_ctc_frames(tokens: Tensor, token_lens: Tensor) -> Tensor:
    """Fewest frames CTC needs per utterance: tokens + 1 blank between each repeated pair.

    Args:
        tokens: int64 (B, U) padded targets.
        token_lens: int64 (B,) valid targets.

    Returns:
        int64 (B,).
    """
    valid = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < token_lens[:, None]
    repeats = ((tokens[:, 1:] == tokens[:, :-1]) & valid[:, 1:]).sum(dim=1)
    return token_lens + repeats


class CTCLoss(nn.Module):
    """CTC loss, summed per utterance and averaged over the batch (as WeNet).

    ``loss(outputs, batch) -> (loss, stats)`` (docs/ARCHITECTURE.md contract 3) with

    * ``outputs["log_probs"]``: (B, T', V) log-probabilities (e.g. :class:`CTCHead`), and
      ``outputs["log_prob_lens"]``: int64 (B,) valid frames;
    * ``batch["tokens"]``: int64 (B, U) unit ids padded with any value,
      ``batch["token_lens"]``: int64 (B,), and optionally ``batch["ids"]`` (B utterance ids,
      named in errors).

    ``stats`` holds the detached ``loss`` and ``loss_per_token`` (the summed loss over the
    batch's tokens, comparable across batch sizes).

    Args:
        blank: id of the blank (0 in speechkit's tokenizer).

    Raises:
        SpeechkitError: an utterance has fewer frames than its transcript needs (CTC would give
            an infinite loss); the message names the utterance and the lengths.

    Example:
        >>> loss_fn = CTCLoss()
        >>> outputs = {"log_probs": torch.full((1, 2, 2), 0.5).log(), "log_prob_lens": torch.tensor([2])}
        >>> batch = {"tokens": torch.tensor([[1]]), "token_lens": torch.tensor([1])}
        >>> round(loss_fn(outputs, batch)[0].item(), 4)  # -log(3/4): paths 11, 01, 10
        0.2877
    """

    def __init__(self, blank: int = 0) -> None:
        super().__init__()
        self.blank = blank

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        log_probs, log_prob_lens = outputs["log_probs"], outputs["log_prob_lens"]
        tokens, token_lens = batch["tokens"], batch["token_lens"]
        self._check_lengths(log_prob_lens, tokens, token_lens, batch.get("ids"))
        total = nn.functional.ctc_loss(
            log_probs.float().transpose(0, 1), tokens, log_prob_lens, token_lens,
            blank=self.blank, reduction="sum", zero_infinity=False,
        )
        loss = total / log_probs.shape[0]
        stats = {
            "loss": loss.detach(),
            "loss_per_token": total.detach() / token_lens.sum().clamp(min=1),
        }
        return loss, stats

    @staticmethod
    def _check_lengths(log_prob_lens: Tensor, tokens: Tensor, token_lens: Tensor, ids) -> None:
        needed = min_ctc_frames(tokens, token_lens)
        too_short = (log_prob_lens < needed).nonzero().flatten().tolist()  # one host sync per batch
        if not too_short:
            return
        i = too_short[0]
        name = repr(ids[i]) if ids is not None else f"#{i} of the batch"
        raise SpeechkitError(
            f"utterance {name}: {int(log_prob_lens[i])} encoder frames cannot carry its "
            f"{int(token_lens[i])} tokens (CTC needs at least {int(needed[i])} with blanks between "
            f"repeats); {len(too_short)} such utterance(s) in this batch. Drop utterances whose "
            "audio is too short for their transcript, or use a larger vocabulary"
        )
