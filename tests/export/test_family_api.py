"""The family interface: artifact specs and ``open_artifact``, ``export_artifact``, the quality
gate and the exporter registry (tiny hand-built graphs; no training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from speechkit.errors import ModelFileError, SpeechkitError
from speechkit.runtime.artifact import ArtifactSpec, names_match, open_artifact

CLIP = ArtifactSpec("clip-classifier", tasks=("kws", "scene"), inputs=("audio",), outputs=("logits",),
                    metadata=("labels", "sample_rate"))
STREAM = ArtifactSpec("streaming", tasks=("asr-ctc-streaming",), inputs=("features", "cache_*"),
                      outputs=("log_probs", "new_cache_*"), metadata=("tokens",))


def identity_model(path: Path, inputs=("audio",), outputs=("logits",), metadata: dict | None = None) -> Path:
    """An ONNX file whose outputs copy its inputs (paired in order), with ``metadata``."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Identity", [i], [o]) for i, o in zip(inputs, outputs)]
    graph = helper.make_graph(
        nodes, "identity",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    onnx.save(model, str(path))
    return path


KWS_META = {"speechkit.task": "kws", "labels": json.dumps(["yes", "no"]), "sample_rate": "16000"}


# -- runtime: open_artifact ------------------------------------------------------------------


def test_names_match_patterns():
    assert names_match(("features", "cache_*"), ["features", "cache_0", "cache_1"])
    assert not names_match(("features", "cache_*"), ["features"])  # a pattern needs one name at least
    assert not names_match(("audio",), ["audio", "extra"])
    assert not names_match(("audio", "lens"), ["audio"])
    assert names_match(("a*", "b"), ["a1", "a2", "b"])


def test_open_artifact_reads_metadata_and_picks_the_matching_spec(tmp_path):
    path = identity_model(tmp_path / "kws.onnx", metadata=KWS_META)
    artifact = open_artifact(path, [STREAM, CLIP])
    assert artifact.spec is CLIP and artifact.task == "kws" and artifact.path == path
    assert artifact.json("labels", list, item=str) == ["yes", "no"]
    assert artifact.positive_int("sample_rate") == 16000
    out = artifact.session.run(["logits"], {"audio": np.ones((2, 4), np.float32)})[0]
    assert out.shape == (2, 4)

    streaming = identity_model(tmp_path / "s.onnx", ("features", "cache_0", "cache_1"),
                               ("log_probs", "new_cache_0", "new_cache_1"),
                               {"speechkit.task": "asr-ctc-streaming", "tokens": "[]"})
    assert open_artifact(streaming, [CLIP, STREAM]).spec is STREAM
    with pytest.raises(ModelFileError, match="'tokens' is not a JSON list"):  # empty list refused
        open_artifact(streaming, [STREAM]).json("tokens", list)
    assert open_artifact(streaming, [STREAM]).json("tokens", list, nonempty=False) == []


def test_open_artifact_errors_are_one_clear_line(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage that is not a protobuf model")
    cases = [
        (tmp_path / "missing.onnx", [CLIP], "missing.onnx: no such model file"),
        (tmp_path, [CLIP], "is a folder"),
        (corrupt, [CLIP], "not a loadable ONNX model"),
        (identity_model(tmp_path / "plain.onnx"), [CLIP], "without speechkit metadata.*'kws' or 'scene'"),
        (identity_model(tmp_path / "scene.onnx", metadata={**KWS_META, "speechkit.task": "scene"}),
         [ArtifactSpec("clip-classifier", ("kws",), ("audio",), ("logits",))], "is a 'scene' model, expected 'kws'$"),
        (identity_model(tmp_path / "io.onnx", ("x",), ("logits",), KWS_META), [CLIP],
         r"'kws' model has graph inputs \['x'\], expected \['audio'\]"),
        (identity_model(tmp_path / "meta.onnx", metadata={"speechkit.task": "kws"}), [CLIP],
         r"lacks \['labels', 'sample_rate'\]"),
    ]
    for path, specs, message in cases:
        with pytest.raises(ModelFileError, match=message) as info:
            open_artifact(path, specs)
        assert "\n" not in str(info.value)
    artifact = open_artifact(identity_model(tmp_path / "bad.onnx", metadata={**KWS_META, "sample_rate": "0"}), [CLIP])
    with pytest.raises(ModelFileError, match="'sample_rate' is '0', expected a positive integer"):
        artifact.positive_int("sample_rate")
    with pytest.raises(ModelFileError, match="'labels' is not a JSON dict"):
        artifact.json("labels", dict)
    with pytest.raises(ModelFileError, match="lacks 'frontend'"):
        artifact.json("frontend", dict)


def test_empty_task_tuple_accepts_any_task(tmp_path):
    anything = ArtifactSpec("any", (), ("audio",), ("logits",))
    path = identity_model(tmp_path / "m.onnx", metadata={"speechkit.task": "whatever"})
    assert open_artifact(path, [anything]).task == "whatever"


# -- export: gate ------------------------------------------------------------------------------


def test_quality_gate_accuracy_and_wer_directions():
    from speechkit.export.gate import QualityGate, QualityGateError

    acc = QualityGate("accuracy", higher_is_better=True, max_delta=1.0)
    assert acc.judge(95.0, 94.0).passed  # exactly one point (float noise tolerated)
    assert acc.judge(95.0, 97.0).delta == pytest.approx(-2.0)
    with pytest.raises(QualityGateError, match=r"drop 1\.50 points, limit 1\.00.*--force"):
        acc.judge(95.0, 93.5, what="m_int8.onnx")
    forced = acc.judge(95.0, 90.0, force=True, num_items=20)
    assert not forced.passed and forced.forced and "on 20 items" in forced.summary()
    assert forced.to_dict()["delta"] == pytest.approx(5.0) and forced.to_dict()["passed"] is False

    wer = QualityGate("wer", higher_is_better=False, max_delta=1.0)
    assert wer.judge(10.0, 9.0).delta == pytest.approx(-1.0)
    with pytest.raises(QualityGateError, match=r"rise 2\.00 points"):
        wer.judge(10.0, 12.0)
    assert wer.with_max_delta(3.0).judge(10.0, 12.0).passed


# -- export: registry --------------------------------------------------------------------------


def test_registry_dispatches_along_the_mro_and_lists_known_exporters():
    from speechkit.export.registry import Exporter, all_exporters, exporter_for, register_exporter
    from speechkit.tasks.classification import ClassificationTask

    names = {e.name for e in all_exporters()}
    assert "clip-classifier" in names  # found by importing every module of speechkit.export

    class SceneTask(ClassificationTask):  # a subclass is served by its base's exporter
        pass

    task = SceneTask.__new__(SceneTask)
    assert exporter_for(task).name == "clip-classifier"

    class Unknown:
        task_name = "sv"

    with pytest.raises(ModelFileError, match=r"no ONNX exporter for 'sv'.*clip-classifier \(ClassificationTask\)"):
        exporter_for(Unknown())

    with pytest.raises(ValueError, match="both serve"):
        register_exporter(Exporter("other", "speechkit.tasks.classification.ClassificationTask", lambda *a: 0, None))

    seen = []
    register_exporter(Exporter("test-unknown", f"{Unknown.__module__}.{Unknown.__qualname__}",
                               lambda task, args, ckpt: seen.append(ckpt), None))
    try:
        exporter_for(Unknown()).export(Unknown(), argparse.Namespace(), Path("x.ckpt"))
        assert seen == [Path("x.ckpt")]
    finally:
        from speechkit.export import registry

        registry._EXPORTERS.pop("test-unknown")


# -- export: export_artifact -------------------------------------------------------------------


def test_export_artifact_checks_metadata_parity_and_writes_atomically(tmp_path):
    import torch

    from speechkit.export.artifact import export_artifact
    from speechkit.export.onnx_export import ParityError

    class Doubler(torch.nn.Module):
        def forward(self, audio):
            return audio * 2.0

    path = tmp_path / "m.onnx"
    example = (torch.randn(2, 4),)
    dyn = {"audio": {0: "batch"}, "logits": {0: "batch"}}
    result = export_artifact(Doubler().eval(), example, path, CLIP, KWS_META, dynamic_shapes=dyn,
                             parity_inputs=[(np.ones((3, 4), np.float32),)])
    assert result.path == path and result.max_abs_diff < 1e-6 and result.ort_path is None
    artifact = open_artifact(path, [CLIP])
    assert artifact.metadata["speechkit_version"] and artifact.metadata["labels"] == KWS_META["labels"]

    with pytest.raises(SpeechkitError, match="for task 'asr'"):
        export_artifact(Doubler(), example, tmp_path / "x.onnx", CLIP, {**KWS_META, "speechkit.task": "asr"})
    with pytest.raises(SpeechkitError, match=r"lacks \['sample_rate'\]"):
        export_artifact(Doubler(), example, tmp_path / "x.onnx", CLIP, {"speechkit.task": "kws", "labels": "[]"})
    with pytest.raises(SpeechkitError, match="do not fit"):
        export_artifact(Doubler(), example, tmp_path / "x.onnx", STREAM, {"speechkit.task": "asr-ctc-streaming", "tokens": "[]"})

    before = path.read_bytes()
    with pytest.raises(ParityError):  # a reference that disagrees: the old file stays
        export_artifact(Doubler().eval(), example, path, CLIP, KWS_META, dynamic_shapes=dyn,
                        parity_fn=lambda audio: audio * 3.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# -- `speechkit export`: dispatch through the registry only ------------------------------------


def test_export_cli_options_come_from_the_registered_exporters(capsys):
    from speechkit.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--int8", "--force", "--ort", "--atol", "--test-manifest", "--max-int8-drop",  # common
                   "--train-manifest", "--calibration-clips",  # clip-classifier
                   "--streaming", "--chunk-ms"):  # asr-ctc
        assert option in text, option
    assert "clip-classifier:accuracydrop,default1" in "".join(text.split())  # argparse wraps lines


def test_export_cli_names_the_checkpoint_when_no_exporter_serves_it(monkeypatch, capsys, tmp_path):
    import speechkit.tasks
    from speechkit.cli.main import main

    class Unknown:
        task_name = "sv"

    monkeypatch.setattr(speechkit.tasks, "load_task", lambda path, **kwargs: Unknown())
    status = main(["export", str(tmp_path / "x.ckpt"), str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert status == 2 and f"{tmp_path / 'x.ckpt'}: no ONNX exporter for 'sv'" in err and err.count("\n") == 1, err
