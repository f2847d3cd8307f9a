"""Personal-KWS export: parity (<= 1e-4), metadata, the torch-free loader, profiles and their errors.

Random-weight BC-ResNet-1 PK-MTL networks (one with TRMs) stand in for trained ones: parity and
the file contracts do not depend on training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.frontends import LogMel
from speechkit.models.personal import PersonalKwsNet
from speechkit.runtime.personal import PersonalKwsModel, enroll, enroll_files, load_profile, trm_apply
from speechkit.tasks.personal import PersonalKwsTask

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def make_task(system: str = "pk-mtl", trm: bool = False, seed: int = 0) -> PersonalKwsTask:
    torch.manual_seed(seed)
    net = PersonalKwsNet(num_classes=len(LABELS), num_speakers=5, system=system, width=1, resnorm=True)
    return PersonalKwsTask(net, LogMel.bcresnet(), labels=LABELS, trm=trm).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from speechkit.export.personal_export import export_personal

    out = tmp_path_factory.mktemp("personal")
    task = make_task(trm=True)
    result = export_personal(task, out / "pk.onnx", sv_threshold=0.42, batch_sizes=(1, 3))
    return task, result


def foreign_profile(profile_path, tmp_path):
    """The profile as another model would have written it (its own model_id)."""
    data = json.loads(profile_path.read_text())
    data["model_id"] = "0123456789abcdef"
    path = tmp_path / "foreign_model_profile.json"
    path.write_text(json.dumps(data))
    return path


def test_personal_export_parity_and_metadata(exported):
    task, result = exported
    assert result.max_abs_diff <= 1e-4
    model = PersonalKwsModel(result.path)
    assert model.task == "personal-kws" and model.labels == LABELS and model.clip_samples == 16000
    assert model.embedding_dim == 32 and model.sv_threshold == pytest.approx(0.42)
    np.testing.assert_allclose(model.keyword_prototypes, task.model.keyword_head.prototypes().detach().numpy(), atol=1e-6)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 16000)).astype(np.float32)
    logits, z_k, z_s = model.run(audio)
    with torch.no_grad():
        out = task.model.outputs(task.features(torch.from_numpy(audio)))
    np.testing.assert_allclose(z_s, out.speaker_embedding.numpy(), atol=1e-4)
    np.testing.assert_allclose(logits, out.keyword_logits.numpy(), atol=1e-4)
    # the TRMs travel in the metadata and the numpy TRM equals the torch one
    with torch.no_grad():
        expected = task.trm_to(out.keyword_embedding, out.speaker_embedding).numpy()
    np.testing.assert_allclose(trm_apply(model.trm["to"], z_k, z_s), expected, atol=1e-4)


@pytest.mark.slow  # a second export (about a minute on a shared CPU)
def test_personal_artifact_and_kws_artifact_refuse_each_other(exported, tmp_path):
    from speechkit.export.clip_classifier import export_clip_classifier
    from speechkit.models.kws import BCResNet
    from speechkit.runtime.kws import KwsModel

    _, result = exported
    with pytest.raises(ModelFileError, match="personal-kws"):
        KwsModel(result.path)
    kws = tmp_path / "kws.onnx"
    export_clip_classifier(LogMel.bcresnet(), BCResNet(num_classes=4, width=1), LABELS, 16000, 16000, kws, batch_sizes=(1,))
    with pytest.raises(ModelFileError, match="expected 'personal-kws'"):
        PersonalKwsModel(kws)


def test_speaker_system_cannot_be_exported(tmp_path):
    from speechkit.export.personal_export import export_personal

    with pytest.raises(SpeechkitError, match="no keyword head"):
        export_personal(make_task("speaker"), tmp_path / "spk.onnx")


def test_enroll_profile_round_trip_and_errors(exported, tmp_path):
    _, result = exported
    model = PersonalKwsModel(result.path)
    rng = np.random.default_rng(0)
    clips = [(f"c{i}", (0.2 * np.sin(np.arange(20000) * (0.05 + 0.01 * i)) + 0.01 * rng.standard_normal(20000))
              .astype(np.float32)) for i in range(3)]
    profile = enroll(model, clips, keyword="yes")
    assert profile.keyword == "yes" and len(profile.clips) == 3
    assert np.linalg.norm(profile.speaker_embedding) == pytest.approx(1.0)
    path = profile.save(tmp_path / "profile.json")
    loaded = load_profile(path, model)
    np.testing.assert_allclose(loaded.speaker_embedding, profile.speaker_embedding, atol=1e-6)
    # a profile made with another model
    with pytest.raises(ModelFileError, match="profile made with another model"):
        load_profile(foreign_profile(path, tmp_path), model)
    # a corrupt profile file
    (tmp_path / "bad.json").write_text('{"format": "speechkit-personal-profile", "model_id": ')
    with pytest.raises(ModelFileError, match="not a JSON profile"):
        load_profile(tmp_path / "bad.json", model)
    (tmp_path / "foreign.json").write_text(json.dumps({"thresholds": {}}))
    with pytest.raises(ModelFileError, match="not a speechkit profile"):
        load_profile(tmp_path / "foreign.json", model)
    # enrolment clips with no speech
    sf.write(tmp_path / "quiet.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(SpeechkitError, match="quiet.wav: no speech found"):
        enroll_files(model, [tmp_path / "quiet.wav"])


def test_enroll_and_demo_cli_errors_are_one_line(exported, tmp_path):
    import subprocess
    import sys

    _, result = exported
    model = PersonalKwsModel(result.path)
    profile = enroll(model, [("a", (0.3 * np.sin(np.arange(16000) * 0.07)).astype(np.float32))], keyword="no")
    foreign = foreign_profile(profile.save(tmp_path / "p.json"), tmp_path)
    sf.write(tmp_path / "in.wav", np.zeros(8000, np.float32), 16000)
    cmd = [sys.executable, "-m", "speechkit", "demo", "kws", "--model", str(result.path), "--profile", str(foreign),
           "--input", str(tmp_path / "in.wav")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "profile made with another model" in lines[0], proc.stderr
