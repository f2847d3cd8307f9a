"""AVSR artifact: ONNX parity, the torch-free runtime against the task, `speechkit transcribe --video`, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechkit.errors import AudioError, ModelFileError

pytest.importorskip("av")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from speechkit.data.synth.avsr import synth_lrs3
    from speechkit.export.avsr_export import export_avsr_task
    from speechkit.frontends import Fbank
    from speechkit.models.avsr import AvsrModel
    from speechkit.tasks.avsr import AvsrTask
    from speechkit.text import train_tokenizer

    root = tmp_path_factory.mktemp("avsr_export")
    train_tokenizer(["ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE"] * 20, root / "bpe.model", vocab_size=30)
    torch.manual_seed(0)
    model = AvsrModel(dim=32, num_layers=1, num_heads=4, visual_channels=4, visual_blocks=(1, 1, 1, 1))
    task = AvsrTask(model, Fbank(snip_edges=False), vocab_size=30, tokenizer_path=str(root / "bpe.model")).eval()
    report = export_avsr_task(task, root / "avsr.onnx")
    synth_lrs3(root / "corpus", train_speakers=0, test_speakers=1, utterances_per_speaker=1, seed=5, noise_files=0)
    return task, root / "avsr.onnx", report, next((root / "corpus" / "test").glob("*/*.mp4"))


def test_parity_and_runtime_matches_the_task(exported):
    from speechkit.data.corpora.lrs import load_video_inputs
    from speechkit.runtime.avsr import AvsrRecognizer

    task, path, report, video = exported
    assert report["parity_max_diff"] <= 1e-4
    recognizer = AvsrRecognizer(path)
    audio, rois = load_video_inputs(video)
    assert rois.shape[1:] == (88, 88) and audio.size == 640 * len(rois)
    with torch.no_grad():  # knf features + ONNX == Fbank + PyTorch on the same file
        reference, _ = task.log_probs(torch.from_numpy(audio)[None], torch.tensor([audio.size]),
                                      torch.from_numpy(rois)[None], torch.tensor([len(rois)]))
    np.testing.assert_allclose(recognizer.log_probs(audio, rois), reference[0].numpy(), atol=1e-3)
    assert recognizer.transcribe(audio, rois) == task.greedy_texts(reference, torch.tensor([len(rois)]))[0]


def test_transcribe_video_cli_and_its_errors(exported, tmp_path, capsys):
    from speechkit.cli.main import main
    from speechkit.data.video import write_video
    from speechkit.runtime.avsr import AvsrRecognizer

    task, path, _, video = exported
    assert main(["transcribe", str(path), "--video", str(video)]) == 0
    from speechkit.data.corpora.lrs import load_video_inputs

    expected = AvsrRecognizer(path).transcribe(*load_video_inputs(video))
    assert capsys.readouterr().out.strip() == expected.strip()
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 100)
    write_video(tmp_path / "blank.mp4", np.full((10, 96, 96), 128, np.uint8), 25, np.zeros(6400, np.float32) + 0.1)
    for name, message in (("corrupt.mp4", "cannot decode"), ("blank.mp4", "no face")):
        with pytest.raises(AudioError, match=message) as err:
            load_video_inputs(tmp_path / name)
        assert "\n" not in str(err.value)
        assert main(["transcribe", str(path), "--video", str(tmp_path / name)]) != 0
        assert message in capsys.readouterr().err
    with pytest.raises(ModelFileError):  # a file that is not an AVSR artifact
        AvsrRecognizer(Path(str(video)))
