"""CTC forced alignment: the Viterbi on hand-made posteriors, word times, the aligners and their errors.

Accuracy on speech is measured by ``benchmarks/ctc_align_error.py`` (against espeak-ng's word
events), not asserted here: the end-to-end tests use a tiny *random* model, whose alignment is
arbitrary but must still be a valid one (ordered, in range, one span per word) and the same
through the checkpoint side (torch) and the ONNX artifact.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from speechkit.decoding.ctc_align import align_words, ctc_forced_align, min_frames, segment_word
from speechkit.errors import ModelFileError, SpeechkitError

TOKENS = ["<blk>", "<unk>", "\u2581", "\u2581A", "B", "\u2581C"]


def posteriors(best: list[int], vocab: int = len(TOKENS), peak: float = 0.9) -> np.ndarray:
    """(T, V) log-posteriors whose most likely unit in frame t is ``best[t]``."""
    p = np.full((len(best), vocab), (1 - peak) / (vocab - 1))
    p[np.arange(len(best)), best] = peak
    return np.log(p)


def brute_force_best(log_probs: np.ndarray, ids: list[int]) -> float:
    """Score of the best frame labelling that collapses to ``ids`` (every labelling enumerated)."""
    best = -np.inf
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [u for k, u in enumerate(path) if u != 0 and (k == 0 or path[k - 1] != u)]
        if collapsed == ids:
            best = max(best, float(sum(log_probs[t, u] for t, u in enumerate(path))))
    return best


def test_viterbi_gives_the_known_path_and_word_boundaries():
    # frames: blank A A B blank blank C C blank  ->  A: 1-2, B: 3, C: 6-7
    lp = posteriors([0, 3, 3, 4, 0, 0, 5, 5, 0])
    ali = ctc_forced_align(lp, [3, 4, 5])
    assert ali.first_frames.tolist() == [1, 3, 6] and ali.last_frames.tolist() == [2, 3, 7]
    assert ali.score == pytest.approx(9 * np.log(0.9))
    words = align_words(lp, [("AB", [3, 4]), ("C", [5])], TOKENS, frame_shift_s=0.04, offset_s=0.0)
    assert [(w.word, round(w.start_s, 3), round(w.end_s, 3)) for w in words] == [("AB", 0.04, 0.16), ("C", 0.24, 0.32)]


def test_viterbi_score_is_the_best_of_all_paths():
    rng = np.random.default_rng(0)
    for ids in ([1, 2], [2, 2], [1, 2, 1]):
        logits = rng.normal(size=(6, 3))
        lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        ali = ctc_forced_align(lp, ids)
        assert ali.score == pytest.approx(brute_force_best(lp, ids))
        assert (np.diff(ali.first_frames) > 0).all() and (ali.last_frames >= ali.first_frames).all()


def test_repeated_tokens_need_a_blank_between_them():
    assert min_frames([3, 3]) == 3
    with pytest.raises(SpeechkitError, match="needs at least 3 frames, the audio gives only 2"):
        ctc_forced_align(posteriors([3, 3]), [3, 3])
    # even where the posteriors say "A A A", the path must pass through a blank to say A twice
    ali = ctc_forced_align(posteriors([3, 3, 3]), [3, 3])
    assert ali.first_frames.tolist() == [0, 2] and ali.last_frames.tolist() == [0, 2]


def test_transcript_longer_than_the_frames_is_a_one_line_error():
    with pytest.raises(SpeechkitError) as info:
        align_words(posteriors([0, 3, 0]), [("A", [3]), ("B", [4]), ("C", [5]), ("A", [3])], TOKENS)
    assert "\n" not in str(info.value) and "needs at least 4 frames" in str(info.value)
    with pytest.raises(SpeechkitError, match="no tokens"):
        align_words(posteriors([0, 3]), [("A", [3]), ("?", [])], TOKENS)


def test_a_bare_boundary_piece_does_not_start_the_word():
    # the bare boundary piece (id 2) comes early, in the pause; the word starts at its letters
    lp = posteriors([2, 0, 0, 0, 4, 0])
    [word] = align_words(lp, [("B", [2, 4])], TOKENS, frame_shift_s=0.04, offset_s=0.0)
    assert (round(word.start_s, 3), round(word.end_s, 3)) == (0.16, 0.2)


def test_segment_word_uses_the_fewest_pieces_and_unk_for_unknown_characters():
    tokens = ["<blk>", "<unk>", "\u2581", "T", "U", "R", "N", "\u2581TU", "RN", "\u2581TURN"]
    assert segment_word("TURN", tokens) == [9]
    assert segment_word("TURNT", tokens) == [9, 3]
    assert segment_word("T'", tokens) == [2, 3, 1]
    with pytest.raises(SpeechkitError, match="covered by no unit"):
        segment_word("X", ["<blk>", "\u2581", "T"])


# -- aligners over a tiny random model ------------------------------------------------------------

TEXT = "OPEN THE DOOR AND PLAY SOME MUSIC"


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A random 2-layer Conformer-CTC task (its tokenizer in ``root/bpe.model``) and a synthesized sentence."""
    import torch

    from speechkit.data.synth.espeak import synthesize_with_words
    from speechkit.data.synth.voices import Voice
    from speechkit.frontends import Fbank
    from speechkit.models.asr import ConformerEncoder
    from speechkit.tasks.asr import AsrCtcTask
    from speechkit.text import train_tokenizer

    root = tmp_path_factory.mktemp("ctc_align")
    sentences = ["TURN ON THE LIGHT", "OPEN THE DOOR", "PLAY SOME MUSIC", "SET AN ALARM"]
    tokenizer = train_tokenizer(sentences * 4, root / "bpe.model", vocab_size=40)
    torch.manual_seed(0)
    encoder = ConformerEncoder(20, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel_size=5,
                               subsampling_channels=8)
    encoder.set_feature_stats(torch.linspace(-10, -6, 20), torch.linspace(2, 4, 20))
    task = AsrCtcTask(encoder, Fbank(num_mel_bins=20), vocab_size=tokenizer.vocab_size,
                      tokenizer_path=str(root / "bpe.model"), cmvn_utterances=0).eval()
    audio, _ = synthesize_with_words(TEXT.lower(), Voice("en-us"), seed=3)
    return task, root, audio


def torch_aligner(task, tokenizer):
    """The checkpoint side's aligner over a task in memory (what ``checkpoint_aligner`` builds from a file);
    ``tokenizer``: a sentencepiece file, or ``"tokens"`` for the token list alone."""
    from speechkit.inference.asr import CheckpointRecognizer, DecodeOptions
    from speechkit.runtime.ctc_aligner import CtcAligner, word_encoder

    recognizer = CheckpointRecognizer(task)
    encode = word_encoder(recognizer.tokens, None if tokenizer == "tokens" else tokenizer, "task")
    return CtcAligner(lambda a: recognizer.log_probs([a], DecodeOptions())[0], encode,
                      recognizer.tokens, recognizer.sample_rate, 0.04, "task")


def assert_valid_alignment(words, text: str, duration_s: float) -> None:
    assert [w.word for w in words] == text.split()
    starts, ends = np.array([w.start_s for w in words]), np.array([w.end_s for w in words])
    assert (ends > starts).all() and (starts[1:] >= ends[:-1] - 1e-9).all(), words
    assert starts[0] >= 0 and ends[-1] <= duration_s + 0.1


def test_random_model_aligns_synthetic_speech_end_to_end(random_model):
    task, root, audio = random_model
    duration = audio.size / 16000
    with_spm = torch_aligner(task, root / "bpe.model").align(audio, TEXT)
    assert_valid_alignment(with_spm, TEXT, duration)
    # the model's own tokenizer (the checkpoint path) encodes as the sentencepiece file does
    own = torch_aligner(task, root / "bpe.model")
    own._encode_word = task.tokenizer.encode
    assert own.align(audio, TEXT) == with_spm
    # without a sentencepiece model, the token list alone still gives every word a valid span
    assert_valid_alignment(torch_aligner(task, "tokens").align(audio, TEXT), TEXT, duration)
    # audio far too short for the transcript: one line
    with pytest.raises(SpeechkitError) as info:
        torch_aligner(task, root / "bpe.model").align(audio[:3200], TEXT)
    assert "\n" not in str(info.value) and "the audio gives only" in str(info.value)


def write_tiny_librispeech(root: Path, audio: np.ndarray) -> Path:
    """One chapter: the sentence, and a 0.1 s utterance too short for its transcript."""
    import soundfile as sf

    from speechkit.fileio import write_text_atomic

    chapter = root / "LibriSpeech" / "dev-clean" / "19" / "198"
    chapter.mkdir(parents=True)
    sf.write(chapter / "19-198-0000.flac", audio, 16000)
    sf.write(chapter / "19-198-0001.flac", audio[:1600], 16000)
    write_text_atomic(chapter / "19-198.trans.txt", f"19-198-0000 {TEXT}\n19-198-0001 {TEXT}\n")
    return root / "LibriSpeech"


def test_align_command_writes_textgrids_in_the_mfa_layout(random_model, tmp_path, capsys, monkeypatch):
    from speechkit.cli.main import main
    from speechkit.data.word_alignments import read_textgrid
    from speechkit.runtime import ctc_aligner

    task, root, audio = random_model
    corpus = write_tiny_librispeech(tmp_path, audio)
    model = tmp_path / "model.random"
    model.write_bytes(b"stands for a checkpoint")
    monkeypatch.setitem(ctc_aligner.ALIGNER_LOADERS, ".random", lambda p, t, n: torch_aligner(task, root / "bpe.model"))
    assert main(["align", "--model", str(model), "--corpus", str(corpus), "--out", str(tmp_path / "ali")]) == 0
    out = capsys.readouterr().out
    assert "Wrote 1 TextGrids (7 words)" in out and "1 failed" in out
    words = read_textgrid(tmp_path / "ali" / "dev-clean" / "19" / "198" / "19-198-0000.TextGrid")
    expected = torch_aligner(task, root / "bpe.model").align(audio, TEXT)
    assert [w.word for w in words] == TEXT.split()
    assert [w.start_s for w in words] == pytest.approx([w.start_s for w in expected], abs=1e-4)


def test_wrong_model_and_tokenizer_are_one_line_errors(random_model, tmp_path):
    import torch

    from speechkit.runtime.ctc_aligner import open_aligner, word_encoder
    from speechkit.text import train_tokenizer

    task, _, _ = random_model
    with pytest.raises(ModelFileError, match="no such model file"):
        open_aligner(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelFileError) as info:
        open_aligner(garbage)
    assert "\n" not in str(info.value)
    (tmp_path / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(ModelFileError, match="cannot align with a .wav file"):
        open_aligner(tmp_path / "x.wav")
    _kws_artifact(tmp_path / "kws.onnx")
    with pytest.raises(ModelFileError) as info:
        open_aligner(tmp_path / "kws.onnx")
    assert "\n" not in str(info.value) and "kws" in str(info.value)
    kws_ckpt = tmp_path / "kws.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {
        "_class_path": "speechkit.tasks.classification.ClassificationTask", "task_name": "kws"}}, kws_ckpt)
    import speechkit.inference.ctc_align  # noqa: F401  (registers .ckpt, as the CLI does)

    with pytest.raises(ModelFileError, match="is a kws checkpoint, expected asr-ctc"):
        open_aligner(kws_ckpt)
    train_tokenizer(["SOMETHING ELSE ENTIRELY"] * 8, tmp_path / "other.model", vocab_size=32)
    with pytest.raises(ModelFileError, match="pieces are not the units"):
        word_encoder(task.tokenizer.tokens(), tmp_path / "other.model", "model.onnx")
    with pytest.raises(ModelFileError, match="not a readable sentencepiece model"):
        word_encoder(task.tokenizer.tokens(), garbage, "model.onnx")


def _kws_artifact(path: Path) -> None:
    """A valid ONNX file of another kind (a clip classifier's metadata), not an ASR artifact."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["audio"], ["logits"])], "kws",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"speechkit.task": "kws", "labels": '["a"]'}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)


@pytest.mark.slow
def test_onnx_artifacts_align_as_the_torch_model_does(random_model, tmp_path):
    """Full-context and streaming artifacts of the random model, through ``open_aligner`` (ONNX export: slow)."""
    from speechkit.export.asr_export import export_asr_task
    from speechkit.runtime.ctc_aligner import open_aligner

    task, root, audio = random_model
    export_asr_task(task, tmp_path / "asr.onnx", streaming=False)
    (tmp_path / "bpe.model").write_bytes((root / "bpe.model").read_bytes())
    onnx_words = open_aligner(tmp_path / "asr.onnx").align(audio, TEXT)  # bpe.model beside it is found
    torch_words = torch_aligner(task, root / "bpe.model").align(audio, TEXT)
    assert [(w.start_s, w.end_s) for w in onnx_words] == pytest.approx([(w.start_s, w.end_s) for w in torch_words])
    export_asr_task(task, tmp_path / "stream" / "asr.onnx", streaming=True, chunk_ms=160)
    assert_valid_alignment(open_aligner(tmp_path / "stream" / "asr.onnx", root / "bpe.model").align(audio, TEXT),
                           TEXT, audio.size / 16000)
