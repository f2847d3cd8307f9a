"""SUPERB-style probe heads (issue 16): they learn, and the ASR probe scores through the text rule."""

from __future__ import annotations

import numpy as np
import torch

from speechkit.inference.probe import (
    CHAR_TOKENS,
    CtcHead,
    ProbeConfig,
    classifier_accuracy,
    ctc_error_rates,
    encode_chars,
    format_table,
    train_classifier,
)


def test_encode_chars_marks_word_starts():
    ids = encode_chars("hi you'd")
    assert [CHAR_TOKENS[i] for i in ids] == ["\u2581", "H", "I", "\u2581", "Y", "O", "U", "'", "D"]


def test_classifier_probe_finds_the_informative_layer():
    torch.manual_seed(0)
    feats, targets = [], []
    for i in range(60):
        label = i % 3
        noise = torch.randn(3, 10, 8)
        noise[2, :, label] += 5.0  # only layer 2 carries the class
        feats.append(noise)
        targets.append(label)
    model = train_classifier(feats[:45], targets[:45], 3, ProbeConfig(epochs=30))
    assert classifier_accuracy(model, feats[45:], targets[45:]) >= 85.0
    assert int(model.featurizer.weights.argmax()) == 2


def test_ctc_error_rates_decode_through_the_text_rule():
    head = CtcHead(1, 4)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.out.bias[0] = 5.0  # always blank -> empty hypothesis
    wer, cer = ctc_error_rates(head, [torch.randn(1, 12, 4)], ["HI YOU"])
    assert wer == 100.0 and cer == 100.0


def test_probe_table_lists_every_metric():
    table = format_table([{"upstream": "log-mel", "params": 0, "macs_per_s": 0, "kws_acc": 50.0, "asr_wer": 90.0,
                           "asr_cer": 40.0, "sid_acc": np.float64(75.0)}])
    assert "| log-mel | 0 | n/a | 50.0 | 90.0 | 40.0 | 75.0 |" in table
