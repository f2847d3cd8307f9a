"""The ``>>>`` examples in the docstrings of the model, front-end, loss, decoding and text packages run
and hold. Every module of those packages (package ``__init__`` files aside) must have at least one
example, and skipped examples (``# doctest: +SKIP``) are the exception, listed below with a reason.

A new module in one of these packages fails here until it shows, in a small deterministic example,
what it computes (shapes, a tiny value).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

#: The packages whose modules must carry running examples.
PACKAGES = (
    "speechkit.models", "speechkit.frontends", "speechkit.losses", "speechkit.metrics", "speechkit.decoding", "speechkit.text",
)

#: Module -> reason, for modules allowed to have +SKIP examples (keep this short).
SKIP_ALLOWED: dict[str, str] = {}


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += sorted(m.name for m in pkgutil.walk_packages(package.__path__, package_name + "."))
    return names


MODULES = _modules()


def _examples(module) -> list[doctest.Example]:
    return [e for t in doctest.DocTestFinder().find(module) for e in t.examples]


def test_the_packages_have_modules():
    assert len(MODULES) >= 15 and "speechkit.decoding.ctc_decoding" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    examples = _examples(module)
    is_package = hasattr(module, "__path__")
    if not is_package:
        assert examples, f"{name} has no docstring example (>>>): add a small, deterministic one"
    skipped = [e.source.strip() for e in examples if e.options.get(doctest.SKIP)]
    assert not skipped or name in SKIP_ALLOWED, f"{name}: skipped examples {skipped}; make them run"
    torch.manual_seed(0)  # examples that draw random inputs see the same numbers in any order
    threads = torch.get_num_threads()
    try:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output above)"
    assert result.attempted == len(examples) - len(skipped)
