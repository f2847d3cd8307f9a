"""The CLI discovers, families declare: subcommands, demo modes, quickstarts, corpora, data links.

A family adds a file in its own package; nothing under ``speechkit/cli/`` changes. These tests
add such a file in a temporary folder appended to the package's ``__path__`` and check that the
command line finds it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from speechkit.errors import SpeechkitError
from speechkit.plugins import Subcommand, add_subparsers, declared, import_submodules


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def subcommand_names(parser: argparse.ArgumentParser, *path: str) -> list[str]:
    """Names of the sub-commands under ``parser`` (following ``path``), in listing order."""
    for name in path:
        parser = _subparsers(parser).choices[name]
    return list(_subparsers(parser).choices)


@pytest.fixture
def extra_module(tmp_path, monkeypatch):
    """``extra_module(package, name, source)``: a new module of ``package`` from a temporary folder."""
    added: list[str] = []

    def add(package_name: str, name: str, source: str) -> str:
        package = importlib.import_module(package_name)
        folder = tmp_path / package_name.replace(".", "_")
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        if str(folder) not in package.__path__:
            monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        added.append(f"{package_name}.{name}")
        return added[-1]

    yield add
    for module_name in added:
        sys.modules.pop(module_name, None)


# -- speechkit.plugins ---------------------------------------------------------------------------


def test_declared_collects_sorts_and_rejects_duplicates(extra_module):
    extra_module("speechkit.runtime", "zz_one_demo", """
        from speechkit.plugins import Subcommand
        DEMO_MODE = [Subcommand("late", "h", lambda p: None, lambda a: 0, order=500),
                     Subcommand("early", "h", lambda p: None, lambda a: 0, order=0)]
    """)
    names = [c.name for c in declared("speechkit.runtime", "DEMO_MODE")]
    assert names[0] == "early" and names[-1] == "late" and {"kws", "asr"} <= set(names)
    assert names.index("kws") < names.index("asr")

    extra_module("speechkit.runtime", "zz_two_demo", """
        from speechkit.plugins import Subcommand
        DEMO_MODE = Subcommand("kws", "a second kws", lambda p: None, lambda a: 0)
    """)
    with pytest.raises(SpeechkitError, match=r"'kws' is declared twice: in speechkit\.runtime\.kws_demo and "
                       r"speechkit\.runtime\.zz_two_demo"):
        declared("speechkit.runtime", "DEMO_MODE")


def test_declared_rejects_what_is_not_a_subcommand(extra_module):
    extra_module("speechkit.quickstart", "zz_bad", "QUICKSTART = ('name', 'help')\n")
    with pytest.raises(SpeechkitError, match=r"speechkit\.quickstart\.zz_bad\.QUICKSTART is a str, expected a Subcommand"):
        declared("speechkit.quickstart", "QUICKSTART")


def test_import_submodules_filters_by_suffix_and_needs_a_package():
    names = [m.__name__ for m in import_submodules("speechkit.cli", suffix="_cmd")]
    assert names == sorted(names) and all(n.endswith("_cmd") for n in names)
    assert {"speechkit.cli.runtime_cmd", "speechkit.cli.prepare_cmd"} <= set(names)
    assert "speechkit.cli.main" not in names
    with pytest.raises(SpeechkitError, match="speechkit.errors is a module, expected a package"):
        import_submodules("speechkit.errors")


def test_add_subparsers_wraps_the_command_options():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what")
    command = Subcommand("go", "go somewhere", lambda p: p.add_argument("--far", action="store_true"), lambda a: 7)
    add_subparsers(sub, [command], before=lambda p: p.add_argument("target"), after=lambda p: p.add_argument("--seed"))
    args = parser.parse_args(["go", "home", "--far", "--seed", "3"])
    assert (args.target, args.far, args.seed, args.func(args)) == ("home", True, "3", 7)


# -- speechkit/cli/*_cmd.py are found, in ORDER ---------------------------------------------------


def test_top_level_commands_are_discovered_in_help_order(extra_module):
    from speechkit.cli.main import build_parser

    names = subcommand_names(build_parser())
    assert names[:4] == ["fit", "validate", "test", "predict"]
    expected = ["quickstart", "synth", "prepare", "demo", "calibrate", "eval-stream", "tokenizer", "transcribe",
                "eval-asr", "average-checkpoints"]
    assert [n for n in names if n in expected] == expected
    assert "export" in names

    extra_module("speechkit.cli", "zz_hello_cmd", """
        def register(sub):
            p = sub.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: print("hello") or 3)
    """)
    assert subcommand_names(build_parser())[-1] == "hello"
    from speechkit.cli.main import main

    assert main(["hello"]) == 3


# -- families declare demo modes, quickstarts, corpora and synthetic layouts -------------------------

NEW_FAMILY = """
    import json
    from speechkit.plugins import Subcommand

    def add_arguments(p):
        p.add_argument("--word", default=None)  # quickstart variants share one parser: nothing required

    def run(args):
        print(json.dumps({{"ran": "{name}", "word": args.word, **{{k: str(v) for k, v in vars(args).items()
                                                                  if k in ("out", "corpus_dir", "seed")}}}}))
        return 0

    {attribute} = Subcommand("{name}", "a new family's {attribute}", add_arguments, run, order=900)
"""


@pytest.mark.parametrize(
    ("package", "attribute", "argv"),
    [
        ("speechkit.runtime", "DEMO_MODE", ["demo", "newfam"]),
        ("speechkit.quickstart", "QUICKSTART", ["quickstart", "newfam", "--seed", "5"]),
        ("speechkit.data.corpora", "PREPARE", ["prepare", "newfam", "CORPUS", "OUT"]),
        ("speechkit.data.synth", "SYNTH", ["synth", "newfam", "OUT", "--seed", "5"]),
    ],
)
def test_a_new_family_module_adds_its_subcommand(extra_module, capsys, package, attribute, argv):
    from speechkit.cli.main import main

    with pytest.raises(SystemExit):  # not there yet: argparse rejects the choice
        main([*argv, "--word", "hi"])
    assert "invalid choice: 'newfam'" in capsys.readouterr().err
    extra_module(package, "zz_newfam", NEW_FAMILY.format(name="newfam", attribute=attribute))
    assert main([*argv, "--word", "hi"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ran"] == "newfam" and out["word"] == "hi"
    if attribute in ("QUICKSTART", "SYNTH"):
        assert out["seed"] == "5"
    if attribute == "PREPARE":
        assert out["corpus_dir"] == "CORPUS"


def test_existing_subcommands_keep_their_order():
    from speechkit.cli.main import build_parser

    parser = build_parser()
    assert subcommand_names(parser, "demo")[:2] == ["kws", "asr"]
    # families added later list after these (their declared order is higher)
    assert subcommand_names(parser, "prepare")[:3] == ["speech-commands", "librispeech", "tau2020-mobile"]
    assert subcommand_names(parser, "synth")[:2] == ["speech-commands", "librispeech"]
    args = parser.parse_args(["quickstart"])
    assert args.job == "kws" and args.keywords is None and args.seed == 0


def test_quickstart_dispatches_to_the_declared_variant(monkeypatch, capsys):
    import speechkit.quickstart.asr as qasr
    import speechkit.quickstart.kws as qkws
    from speechkit.cli.main import main

    seen = []
    monkeypatch.setattr(qkws, "run", lambda opts: seen.append(("kws", opts)))
    monkeypatch.setattr(qasr, "run", lambda opts: seen.append(("asr", opts)))
    assert main(["quickstart", "--keywords", "Yes, hey_there", "--epochs", "2", "--stream-keywords", "3"]) == 0
    assert main(["quickstart", "asr", "--speakers", "7", "--seed", "4"]) == 0
    (kind, kws_opts), (kind2, asr_opts) = seen
    assert (kind, kws_opts.keywords, kws_opts.epochs, kws_opts.stream_keywords) == ("kws", ("yes", "hey_there"), 2, 3)
    assert (kind2, asr_opts.speakers, asr_opts.seed) == ("asr", 7, 4)
    assert main(["quickstart", "--keywords", " , "]) == 2
    assert capsys.readouterr().err.strip() == "speechkit: error: --keywords: give at least one keyword"
    assert len(seen) == 2


# -- task -> data links are class attributes ------------------------------------------------------


def test_data_links_come_from_the_task_class_mro(tmp_path):
    from speechkit.tasks.asr import AsrCtcTask
    from speechkit.tasks.base import SpeechTask
    from speechkit.tasks.classification import ClassificationTask
    from speechkit.tasks.training import data_links, task_class_path

    assert SpeechTask.data_links == ()
    assert ("data.labels", "model.init_args.labels") in ClassificationTask.data_links
    assert ("data.vocab_size", "model.init_args.vocab_size") in AsrCtcTask.data_links
    assert data_links("speechkit.tasks.classification.ClassificationTask") == ClassificationTask.data_links
    assert data_links("no.such.Module") == () and data_links(None) == ()

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  class_path: speechkit.tasks.asr.AsrCtcTask\n")
    assert task_class_path(["--config", str(config)]) == "speechkit.tasks.asr.AsrCtcTask"
    assert task_class_path([f"--config={config}", "--model", "my.pkg.Task"]) == "my.pkg.Task"
    with pytest.raises(SpeechkitError, match="no such config file"):
        task_class_path(["--config", str(tmp_path / "missing.yaml")])
    config.write_text("model: [unclosed\n")
    with pytest.raises(SpeechkitError, match="not valid YAML"):
        task_class_path(["-c", str(config)])


def test_a_task_subclass_inherits_links(extra_module):
    from speechkit.tasks.classification import ClassificationTask
    from speechkit.tasks.training import data_links

    name = extra_module("speechkit.tasks", "zz_scene_task", """
        from speechkit.tasks.classification import ClassificationTask
        class SceneTask(ClassificationTask):
            pass
        class OwnLinks(ClassificationTask):
            data_links = (("data.x", "model.init_args.x"),)
    """)
    assert data_links(f"{name}.SceneTask") == ClassificationTask.data_links
    assert data_links(f"{name}.OwnLinks") == (("data.x", "model.init_args.x"),)


# -- demo I/O in the runtime ---------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_draws_only_on_a_terminal_and_clears_before_results(capsys):
    from speechkit.runtime.demo import StatusLine, level_meter

    tty = FakeTty()
    line = StatusLine(tty)
    assert line.live
    line.update("... open the")
    line.update("... open")  # shorter: padded over the longer one
    line.emit({"text": "open the door"})
    line.close()
    assert tty.getvalue() == "\r... open the\r... open    \r            \r"
    assert capsys.readouterr().out == '{"text": "open the door"}\n'

    piped = io.StringIO()
    quiet = StatusLine(piped)
    assert not quiet.live
    quiet.update(level_meter(-10.0, {"yes": 0.9}, ["yes"]))
    quiet.emit_all([{"a": 1}, {"a": 2}])
    quiet.close()
    assert piped.getvalue() == "" and capsys.readouterr().out == '{"a": 1}\n{"a": 2}\n'
    assert level_meter(5.0, {}, ["a"]) == "level    5.0 dB [####################]  a 0.00"
    assert level_meter(-90.0, {}, []).startswith("level  -90.0 dB [" + " " * 20 + "]")


def test_pump_input_reads_raw_pcm_and_rejects_bad_rates(monkeypatch):
    from speechkit.errors import AudioError
    from speechkit.runtime.demo import add_input_arguments, pump_input

    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    samples = (np.arange(-800, 800, dtype=np.int16) * 20).astype("<i2")

    class Stdin:
        buffer = io.BytesIO(samples.tobytes())

    monkeypatch.setattr(sys, "stdin", Stdin)
    got, finished = [], []
    status = pump_input(parser.parse_args(["--input", "-", "--rate", "8000"]),
                        lambda block, rate: got.append((block, rate)), lambda: finished.append(True))
    assert status == 0 and finished == [True]
    audio = np.concatenate([b for b, _ in got])
    assert {r for _, r in got} == {8000} and audio.shape == (1600, 1)
    np.testing.assert_allclose(audio[:, 0], samples / 32768.0, atol=1e-6)
    with pytest.raises(AudioError, match="--rate and --channels must be positive, got 0 and 1"):
        pump_input(parser.parse_args(["--input", "-", "--rate", "0"]), lambda b, r: None, lambda: None)


def test_run_demo_names_the_known_modes():
    from speechkit.runtime.demo import run_demo

    with pytest.raises(SpeechkitError, match=r"no demo mode 'nope'; known: kws, asr"):
        run_demo("nope", [])


def test_demo_discovery_and_cli_front_stay_torch_free():
    code = (
        "import sys\n"
        "from speechkit.runtime.demo import demo_modes\n"
        "modes = [m.name for m in demo_modes()]\n"
        "import speechkit.cli.runtime_cmd, speechkit.runtime.kws_demo, speechkit.runtime.asr_demo\n"
        "from speechkit.cli.main import build_parser\n"
        "build_parser().parse_args(['demo', 'kws', '--model', 'm.onnx', '--input', '-'])\n"
        "bad = [m for m in ('torch', 'lightning', 'lhotse', 'torchmetrics') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'kws' in modes and 'asr' in modes, modes\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_config_names_a_shipped_recipe_outside_a_checkout(tmp_path, monkeypatch):
    """After `pip install .` there is no recipes/ folder: --config finds the packaged copy."""
    from speechkit.tasks.training import RECIPES_DIR, resolve_configs

    monkeypatch.chdir(tmp_path)
    shipped = str(RECIPES_DIR / "synthetic/kws/config.yaml")
    assert resolve_configs(["fit", "--config", "recipes/synthetic/kws/config.yaml"]) == ["fit", "--config", shipped]
    assert resolve_configs(["--config=synthetic/kws/config.yaml"]) == [f"--config={shipped}"]
    own = tmp_path / "synthetic" / "kws" / "config.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("seed_everything: 1\n")
    assert resolve_configs(["--config", "synthetic/kws/config.yaml"]) == ["--config", "synthetic/kws/config.yaml"]
    assert resolve_configs(["--config", "missing.yaml"]) == ["--config", "missing.yaml"]
