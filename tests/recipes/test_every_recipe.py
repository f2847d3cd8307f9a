"""Every recipe YAML, found by globbing ``speechkit/recipes`` (no hand list), is instantiated
through the LightningCLI path and runs one training and one validation batch on a tiny corpus
in its real layout.

What is tested, per *run* (one ``--config`` chain):

* every full config (it has ``model.class_path``) on its own;
* every chain of two or more ``--config`` files that a recipe README or a YAML header documents
  (e.g. ``config.yaml`` + ``train_960h.yaml`` + ``streaming_320ms.yaml``);
* every overlay (a YAML without ``model.class_path``, e.g. ``classes35.yaml``) that no document
  chains, after the ``config.yaml`` of its folder (the convention of ``recipes/README.md``).

The only hand-written map is :data:`TINY_DATA`: which tiny corpus stands in for each data folder
a recipe names (``data/...``). A new YAML over a known corpus needs no edit here; a recipe for a
new corpus fails with a message that asks for a builder.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import speechkit
from speechkit.cli.lightning_cli import run_lightning_cli

RECIPES = Path(speechkit.__file__).resolve().parent / "recipes"


# -- discovery ---------------------------------------------------------------------------------
def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def is_overlay(config: dict) -> bool:
    """A partial config: passed after a base, it names no task class (``model.class_path``)."""
    model = config.get("model")
    return not (isinstance(model, dict) and model.get("class_path"))


def _command_lines(path: Path) -> list[str]:
    """The lines of a README, or the comment lines of a YAML, with ``\\`` continuations joined."""
    lines = path.read_text().splitlines()
    if path.suffix == ".yaml":
        lines = [line.strip()[1:] for line in lines if line.strip().startswith("#")]
    joined, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            joined.append(current + line)
            current = ""
    return joined + ([current] if current else [])


def _resolve(name: str, folder: Path, root: Path) -> Path:
    name = name.strip("`'\"(),")
    return root / name[len("recipes/"):] if name.startswith("recipes/") else folder / name


def documented_chains(root: Path = RECIPES) -> list[tuple[Path, ...]]:
    """``--config A --config B ...`` chains (two or more files) written in the recipe READMEs
    and YAML headers. The top-level ``recipes/README.md`` is left out: it shows placeholders."""
    sources = [p for p in sorted(root.rglob("README.md")) if p.parent != root]
    sources += sorted(root.rglob("*.yaml"))
    chains = []
    for source in sources:
        for line in _command_lines(source):
            names = re.findall(r"--config[ =]+(\S+)", line)
            if len(names) >= 2:
                chains.append(tuple(_resolve(n, source.parent, root) for n in names))
    return chains


def recipe_runs(root: Path = RECIPES) -> list[tuple[Path, ...]]:
    """Every ``--config`` chain to test (see the module docstring), in a stable order."""
    yamls = sorted(root.rglob("*.yaml"))
    runs = [(p,) for p in yamls if not is_overlay(_load(p))]
    runs += [chain for chain in documented_chains(root) if all(p.is_file() for p in chain)]
    chained = {p for run in runs for p in run}
    runs += [(p.parent / "config.yaml", p) for p in yamls if p not in chained]
    return list(dict.fromkeys(runs))


RUNS = recipe_runs()


def _run_id(run: tuple[Path, ...]) -> str:
    first = str(run[0].relative_to(RECIPES))
    return "+".join([first] + [p.name if p.parent == run[0].parent else str(p.relative_to(RECIPES)) for p in run[1:]])


def test_every_yaml_is_in_a_run():
    """The glob finds the recipes, and each YAML is tested (alone or in a chain)."""
    yamls = set(RECIPES.rglob("*.yaml"))
    assert len(yamls) >= 10, f"only {len(yamls)} recipe YAMLs under {RECIPES}"
    assert yamls == {p for run in RUNS for p in run if p.is_file()}
    # the documented combinations are among the runs, e.g. the 960 h streaming one
    asr = RECIPES / "librispeech" / "asr_conformer_ctc"
    assert (asr / "config.yaml", asr / "train_960h.yaml", asr / "streaming_320ms.yaml") in RUNS
    assert (asr / "config.yaml", asr / "streaming_640ms.yaml") in RUNS


def test_documented_config_chains_name_existing_files():
    for chain in documented_chains():
        missing = [str(p) for p in chain if not p.is_file()]
        assert not missing, f"a recipe document chains config files that do not exist: {missing}"


def test_discovery_finds_a_new_recipe_its_overlays_and_documented_chains(tmp_path):
    """A recipe added to the folder is tested without editing any list."""
    folder = tmp_path / "new_corpus" / "new_model"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model:\n  class_path: speechkit.tasks.ClassificationTask\n")
    (folder / "small.yaml").write_text("model:\n  init_args: {task_name: scene}\n")  # overlay
    (folder / "long.yaml").write_text("trainer: {max_epochs: 3}\n")  # overlay
    (folder / "README.md").write_text(
        "speechkit fit --config recipes/new_corpus/new_model/config.yaml \\\n"
        "    --config recipes/new_corpus/new_model/long.yaml\n"
        "or (`--config config.yaml --config long.yaml --config small.yaml`)\n"
    )
    config, small, long = folder / "config.yaml", folder / "small.yaml", folder / "long.yaml"
    assert documented_chains(tmp_path) == [(config, long), (config, long, small)]
    assert recipe_runs(tmp_path) == [(config,), (config, long), (config, long, small)]
    (folder / "README.md").unlink()  # undocumented overlays go after their folder's config.yaml
    assert recipe_runs(tmp_path) == [(config,), (config, long), (config, small)]


def test_overlay_detection():
    assert is_overlay({"trainer": {"max_epochs": 3}, "data": {"init_args": {"manifest_dir": "x"}}})
    assert is_overlay({"model": {"init_args": {"decode_chunk_size": 16}}})
    assert not is_overlay({"model": {"class_path": "speechkit.tasks.ClassificationTask"}})


# -- tiny data in the real layouts -------------------------------------------------------------
#: The data folders the recipes name -> the tiny corpus that stands in for each.
TINY_DATA = {
    "data/speech_commands_v1": "speech_commands_v1",
    "data/speech_commands_v2": "speech_commands_v2",
    "data/speech_commands_v2_35": "speech_commands_v2_35",
    "data/synth_sc_manifests": "synth_speech_commands",
    "data/synth_pk_manifests": "synth_speech_commands",
    "data/synth_pk_heldout_manifests": "synth_personal_heldout",
    "data/tau2020_mobile": "tau2020_mobile",
    "data/librispeech": "librispeech",
    "data/synth_commands/manifests": "librispeech",
    "data/synth_general/manifests": "librispeech",
    "data/synth_ssl/manifests": "librispeech",
    "data/icbhi": "icbhi",
    "data/synth_icbhi_manifests": "synth_icbhi",
    "data/synth_fewshot_sc_manifests": "fewshot_split",
    "data/speech_commands_v2_fewshot": "fewshot_split",
    "data/synth_libriword_manifests": "libriword",
    "data/libriword": "libriword",
    "data/synth_lrs3/manifests": "synth_lrs3",
    "data/synth_lrs3/corpus/musan/noise": "synth_lrs3_noise",
    "data/lrs3/manifests": "synth_lrs3",
    "data/musan/noise": "synth_lrs3_noise",
}


class TinyData:
    """Builds each tiny corpus on first use (prepared manifests, as ``speechkit prepare`` writes them)."""

    def __init__(self, request, root: Path) -> None:
        self.request, self.root, self.built = request, root, {}

    def resolve(self, value: str) -> Path:
        """The tiny stand-in for a recipe's ``data/...`` path (a folder, a manifest or a tokenizer)."""
        path = Path(value)
        if path.suffix == ".model":  # a sentencepiece tokenizer
            return self.get("tokenizer")
        folder, name = (path.parent, path.name) if path.suffix == ".gz" else (path, None)
        key = TINY_DATA.get(folder.as_posix())
        if key is None:
            pytest.fail(f"{value}: no tiny corpus stands in for this data folder; add one to TINY_DATA in {__file__}")
        out = self.get(key)
        if name is None:
            return out
        assert (out / name).is_file(), f"{value}: the tiny {key} corpus has no {name}"
        return out / name

    def get(self, key: str) -> Path:
        if key not in self.built:
            self.built[key] = getattr(self, "_" + key)()
        return self.built[key]

    def _speech_commands(self, words, version: int, classes: str) -> Path:
        from fakes import make_speech_commands

        from speechkit.data.corpora import prepare_speech_commands

        tree = self.root / f"speech_commands_v0.0{version}"
        if not tree.exists():
            make_speech_commands(tree, words=words)
        out = self.root / f"sc_v{version}_{classes}"
        prepare_speech_commands(tree, out, version=version, classes=classes, num_jobs=1)
        return out

    def _speech_commands_v1(self) -> Path:
        from speechkit.data.corpora.speech_commands import V1_WORDS

        return self._speech_commands(V1_WORDS, 1, "12")

    def _speech_commands_v2(self) -> Path:
        from speechkit.data.corpora.speech_commands import V2_WORDS

        return self._speech_commands(V2_WORDS, 2, "12")

    def _speech_commands_v2_35(self) -> Path:
        from speechkit.data.corpora.speech_commands import V2_WORDS

        return self._speech_commands(V2_WORDS, 2, "35")

    def _synth_speech_commands(self) -> Path:
        return self.request.getfixturevalue("tiny_kws_manifests")

    def _synth_personal_heldout(self) -> Path:
        """Speakers of the held-out voice families saying ``yes``/``no`` (personal KWS test speakers)."""
        from speechkit.data.corpora import prepare_speech_commands
        from speechkit.data.synth.speech_commands import synth_speech_commands

        corpus = self.root / "synth_pk_heldout"
        synth_speech_commands(corpus, words=["yes", "no"], unknown_words=["cat"], num_speakers=3, clips_per_word=2,
                              seed=7, background_seconds=2.0, voice_pool="heldout", validation_percent=0.0)
        out = self.root / "synth_pk_heldout_manifests"
        prepare_speech_commands(corpus, out, keywords=["yes", "no"], num_jobs=1)
        return out

    def _fewshot_split(self) -> Path:
        """splitGSC (``prepare speech-commands --split fewshot``) of tone words, 12 clips per class."""
        from fakes import make_speech_commands

        from speechkit.data.corpora import prepare_speech_commands
        from speechkit.data.corpora.speech_commands import V2_WORDS

        tree = make_speech_commands(self.root / "sc_fewshot", words=V2_WORDS, seconds=0.1, clips_per_speaker=4)
        out = self.root / "sc_fewshot_manifests"
        prepare_speech_commands(tree, out, split="fewshot", num_jobs=1)
        return out

    def _libriword(self) -> Path:
        """A LibriWord-format folder (cuts_train + labels) of 6 tone words."""
        from fakes import make_speech_commands

        from speechkit.data.corpora import prepare_speech_commands

        tree = make_speech_commands(self.root / "libriword_words", words=["alpha", "bravo", "delta", "echo", "golf",
                                                                            "hotel"], seconds=0.1)
        out = self.root / "libriword_manifests"
        prepare_speech_commands(tree, out, classes="all", silence_ratio=0, num_jobs=1)
        return out

    def _tau2020_mobile(self) -> Path:
        return self.request.getfixturevalue("tau_manifests")

    def _librispeech(self) -> Path:
        from fakes import make_librispeech

        from speechkit.data.corpora import prepare_librispeech

        corpus = make_librispeech(self.root / "LibriSpeech")
        out = self.root / "librispeech_manifests"
        prepare_librispeech(corpus, out, num_jobs=1)
        return out

    def _ssl_teacher(self) -> Path:
        """A tiny random HuBERT in fairseq's file layout (320 samples per frame, as every SSL student)."""
        from speechkit.models.ssl import HubertConfig, HubertModel
        from speechkit.models.ssl.checkpoints import fairseq_config, to_fairseq_state_dict

        cfg = HubertConfig(conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, dim=32, num_layers=2,
                           num_heads=4, ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4)
        path = self.root / "hubert_tiny.pt"
        torch.save({"model": to_fairseq_state_dict(HubertModel(cfg)), "cfg": {"model": fairseq_config(cfg)}}, path)
        return path

    def _icbhi(self, cycle_seconds: float = 8.0) -> Path:
        """The synthetic ICBHI twin (4 patients), prepared with the recipe's cycle length."""
        from speechkit.data.corpora.icbhi import prepare_icbhi
        from speechkit.data.synth.respiratory import synth_icbhi

        corpus = self.root / "icbhi"
        if not corpus.exists():
            synth_icbhi(corpus, num_patients=4, recordings_per_patient=1, cycles_per_recording=(3, 4),
                        cycle_seconds=(1.2, 2.0), test_percent=50, seed=0)
        out = self.root / f"icbhi_{cycle_seconds:g}s"
        prepare_icbhi(corpus, out, cycle_seconds=cycle_seconds)
        return out

    def _synth_icbhi(self) -> Path:
        return self._icbhi(cycle_seconds=2.0)

    def _synth_lrs3_corpus(self) -> Path:
        """The synthetic audio-visual corpus in the LRS3 layout (speech + rendered mouths, mp4)."""
        from speechkit.data.synth.avsr import synth_lrs3

        corpus = self.root / "synth_lrs3"
        synth_lrs3(corpus, train_speakers=2, test_speakers=1, utterances_per_speaker=3, seed=0, noise_files=2)
        return corpus

    def _synth_lrs3(self) -> Path:
        from speechkit.data.corpora.lrs import prepare_lrs

        out = self.root / "synth_lrs3_manifests"
        prepare_lrs(self.get("synth_lrs3_corpus"), out, "lrs3", valid_utterances=2)
        return out

    def _synth_lrs3_noise(self) -> Path:
        return self.get("synth_lrs3_corpus") / "musan" / "noise"

    def _tokenizer(self) -> Path:
        from fakes import LIBRISPEECH_TEXTS

        from speechkit.text import train_tokenizer

        path = self.root / "bpe.model"
        train_tokenizer(list(LIBRISPEECH_TEXTS) * 10, path, vocab_size=30)
        return path


    def teacher(self, run: tuple[Path, ...], values: dict[str, Any]) -> Path:
        """A checkpoint of the run's own model trained one step without distillation (same front-end,
        tokenizer and data as the student): what a KD recipe's ``teacher_checkpoint`` needs."""
        key = "teacher:" + "|".join(str(p) for p in run)
        if key not in self.built:
            out = self.root / f"teacher_{len(self.built)}"
            plain = {**values, "trainer.default_root_dir": str(out), "model.init_args.teacher_checkpoint": "",
                     "model.init_args.distill.layers": "none", "model.init_args.distill.token_weight": 0.0,
                     "model.init_args.distill.apc_weight": 0.0}
            cli = run_lightning_cli([a for p in run for a in ("--config", str(p))] + _argv(plain), run=False)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            cli.trainer.save_checkpoint(out / "teacher.ckpt")
            self.built[key] = out / "teacher.ckpt"
        return self.built[key]


@pytest.fixture(scope="session")
def tiny_data(request, tmp_path_factory) -> TinyData:
    return TinyData(request, tmp_path_factory.mktemp("recipe_data"))


# -- the config as written, after the test's overrides ----------------------------------------
def merge(base: Any, over: Any) -> Any:
    """Later config wins, as LightningCLI merges ``--config`` files: dicts key by key (a new
    ``class_path`` replaces the whole entry), anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        if "class_path" in over and over["class_path"] != base.get("class_path"):
            return over
        return {**base, **{k: merge(base[k], v) if k in base else v for k, v in over.items()}}
    return over


def overrides(config: dict, data: TinyData, root: Path) -> dict[str, Any]:
    """Dotted key -> value: tiny data in place of each ``data/...`` path, CPU precision, one
    train and one validation batch, small batches, no loader processes, output under ``root``."""
    out: dict[str, Any] = {"trainer.default_root_dir": str(root), "trainer.fast_dev_run": 1}
    if "16" in str(config.get("trainer", {}).get("precision", "")):
        out["trainer.precision"] = "32-true"  # bf16 autocast on a CPU is slow and not what a CPU user runs
    for key, value in (config.get("data", {}).get("init_args") or {}).items():
        if isinstance(value, str) and value.startswith("data/"):
            out[f"data.init_args.{key}"] = str(data.resolve(value))
        elif isinstance(value, list) and value and all(isinstance(v, str) and v.startswith("data/") for v in value):
            out[f"data.init_args.{key}"] = [str(data.resolve(v)) for v in value]
        elif key == "num_workers":
            out[f"data.init_args.{key}"] = 0
        elif key == "batch_size":
            out[f"data.init_args.{key}"] = min(int(value), 8)
    return out


def _set(config: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = value


def _class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def assert_subset(expected: Any, actual: Any, where: str = "") -> None:
    """Every value ``expected`` sets is in ``actual`` (the parsed config; defaults may add keys)."""
    if isinstance(actual, os.PathLike):
        actual = os.fspath(actual)
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}: missing from the parsed config"
            if key == "class_path":
                assert _class(value) is _class(actual[key]), f"{where}.class_path: {actual[key]} != {value}"
            else:
                assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_subset(e, a, f"{where}[{i}]")
    elif isinstance(expected, float) and isinstance(actual, (int, float)):
        assert math.isclose(expected, actual, rel_tol=1e-9), f"{where}: {actual!r} != {expected!r}"
    else:
        assert expected == actual, f"{where}: {actual!r} != {expected!r}"


def test_assert_subset_catches_a_value_the_parser_lost():
    assert_subset({"a": {"b": [1, 2.0]}}, {"a": {"b": (1, 2.0), "c": 3}})
    with pytest.raises(AssertionError, match="a.b"):
        assert_subset({"a": {"b": 16}}, {"a": {"b": 8}})
    with pytest.raises(AssertionError, match="missing"):
        assert_subset({"a": {"x": 1}}, {"a": {}})


# -- per-family checks (a family without one still gets the generic checks) -------------------
def check_classification(cli, manifest_dir: Path) -> None:
    labels = json.loads((manifest_dir / "labels.json").read_text())
    assert cli.model.labels == labels == cli.datamodule.labels
    assert cli.model.hparams["labels"] == labels
    assert cli.model.clip_samples == cli.datamodule.clip_samples
    # (the TAU recipe once kept 16 kHz in the task for 44.1 kHz data: the link found no attribute)
    assert cli.model.sample_rate == cli.datamodule.hparams["sample_rate"], "data.sample_rate was not linked"
    feats, _ = cli.model.frontend(torch.zeros(2, cli.model.clip_samples))
    cli.model.eval()
    with torch.no_grad():
        assert cli.model.model(feats).shape == (2, len(labels))


def check_asr(cli, tokenizer: Path) -> None:
    from speechkit.text import Tokenizer

    task = cli.model
    vocab_size = Tokenizer(tokenizer).vocab_size
    assert task.ctc_head.proj.out_features == cli.datamodule.vocab_size == vocab_size
    assert task.tokenizer_path == str(tokenizer) and task.sample_rate == 16000
    task.eval()
    with torch.no_grad():
        log_probs, lens = task.log_probs(torch.zeros(1, 16000), torch.tensor([16000]), 8)
    assert log_probs.shape == (1, int(lens[0]), vocab_size)


def check_avsr(cli) -> None:
    task = cli.model
    assert task.ctc_head.proj.out_features == cli.datamodule.vocab_size and task.sample_rate == 16000
    task.eval()
    with torch.no_grad():
        log_probs, lens = task.log_probs(torch.zeros(1, 6400), torch.tensor([6400]),
                                         torch.zeros(1, 10, 88, 88, dtype=torch.uint8), torch.tensor([10]))
    assert log_probs.shape == (1, 10, cli.datamodule.vocab_size) and lens.tolist() == [10]


def check_personal(cli) -> None:
    """Personal KWS: labels, keyword classes and training speakers linked from the data module."""
    assert cli.model.labels == cli.datamodule.labels
    assert cli.model.model.num_classes == len(cli.datamodule.labels)
    assert cli.model.model.num_speakers == cli.datamodule.num_speakers >= 1  # the tiny GSC has one training speaker
    assert cli.model.clip_samples == cli.datamodule.clip_samples


def _argv(values: dict[str, Any]) -> list[str]:
    argv = []
    for key, value in values.items():
        argv += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return argv


#: Recipes whose model is the full-size GPU one (86 M-parameter AST on 8 s clips: ~1-2 min and
#: ~9 GB per batch on a CPU): their one-batch run is in the slow set; the same code runs at the
#: tiny preset through the synthetic recipe in the default set.
HEAVY_RECIPES = ("icbhi/",)


def _marked(run: tuple[Path, ...]):
    heavy = str(run[0].relative_to(RECIPES)).startswith(HEAVY_RECIPES)
    return pytest.param(run, marks=pytest.mark.slow) if heavy else run


@pytest.mark.trains  # one optimizer step (asserts no output values)
@pytest.mark.parametrize("run", [_marked(run) for run in RUNS], ids=_run_id)
def test_recipe_instantiates_and_runs_one_batch(run, tiny_data, tmp_path):
    from speechkit.tasks.asr import AsrCtcTask
    from speechkit.tasks.classification import ClassificationTask

    missing = [str(p) for p in run if not p.is_file()]
    assert not missing, f"overlay without a base: {missing} (put a config.yaml next to it or document its chain)"
    configs = [_load(p) for p in run]
    assert not is_overlay(configs[0]), f"{run[0]}: a chain must start from a full config (model.class_path)"
    expected: dict = {}
    for config in configs:
        expected = merge(expected, config)
    values = overrides(expected, tiny_data, tmp_path)
    for key, value in values.items():
        _set(expected, key, value)

    teacher = ((expected.get("model") or {}).get("init_args") or {}).get("teacher_checkpoint")
    if teacher:  # a distillation recipe: a tiny teacher trained one step from the same chain stands in
        values["model.init_args.teacher_checkpoint"] = str(tiny_data.teacher(run, values))
        _set(expected, "model.init_args.teacher_checkpoint", values["model.init_args.teacher_checkpoint"])

    if ((expected.get("model") or {}).get("init_args") or {}).get("teacher_path"):  # SSL distillation
        values["model.init_args.teacher_path"] = str(tiny_data.get("ssl_teacher"))
        _set(expected, "model.init_args.teacher_path", values["model.init_args.teacher_path"])

    cli = run_lightning_cli([a for p in run for a in ("--config", str(p))] + _argv(values), run=False)

    # The parser kept every value the files set (last file wins), the test's overrides on top.
    assert_subset(expected, cli.config.as_dict(), "config")
    if isinstance(cli.model, ClassificationTask):
        check_classification(cli, Path(values["data.init_args.manifest_dir"]))
    elif type(cli.model).__name__ == "AvsrTask":
        check_avsr(cli)
    elif isinstance(cli.model, AsrCtcTask):
        check_asr(cli, Path(values["data.init_args.tokenizer_path"]))
    elif type(cli.model).__name__ == "PersonalKwsTask":
        check_personal(cli)
    # One training and one validation batch through the recipe's data, task, loss and optimizer.
    cli.model.train()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    losses = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if "loss" in k}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
