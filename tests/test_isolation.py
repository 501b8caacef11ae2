"""Issue 24, item 4: a plugin that fails to import breaks nothing else.

A plugin (an ``experiments/`` module, an entry point or an ``ALIGNJAX_PLUGINS`` item) that fails to
import is reported in one warning line naming its file, registers nothing, is marked broken by
``alignjax list``, and every other command and the test collection keep working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignjax import registry
from alignjax.registry import DYNAMICS, EXPERIMENTS, LOSSES, SUITES, TRAINERS

ROOT = Path(__file__).resolve().parents[1]
WARNING = "alignjax: warning: plugin {} failed to import: {}"
SYNTAX = "import alignjax\ndef f(:\n    pass\n"
# registers a loss, then fails: the loss must not stay registered
PARTIAL = ("from alignjax.registry import LOSSES\n"
           "LOSSES.register('half_registered', lambda a, b, c, d, *, beta: a, hparams={})\n"
           "raise RuntimeError('planted failure')\n")


@pytest.fixture()
def plugins(tmp_path):
    bad = tmp_path / "bad_syntax.py"
    bad.write_text(SYNTAX)
    partial = tmp_path / "half_registered.py"
    partial.write_text(PARTIAL)
    return bad, partial


def _env(*files) -> dict:
    named = [p for p in os.environ.get("ALIGNJAX_PLUGINS", "").split(",") if p.strip()]
    return {**os.environ, "ALIGNJAX_PLUGINS": ",".join([*named, *map(str, files)])}


def _run(args, env, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("alignjax: warning: plugin ")]


def test_list_marks_a_broken_plugin_and_warns_once_per_plugin(plugins):
    bad, partial = plugins
    proc = _run(["-m", "alignjax", "list"], _env(bad, partial))
    assert proc.returncode == 0, proc.stderr
    assert _warnings(proc.stderr) == [
        WARNING.format(bad, "SyntaxError: invalid syntax (bad_syntax.py, line 2)"),
        WARNING.format(partial, "RuntimeError: planted failure")], proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"broken:   {bad} (failed to import" in proc.stdout
    assert f"broken:   {partial} (failed to import" in proc.stdout
    assert "half_registered" not in proc.stdout.split("broken:")[0]  # what it registered before failing is undone
    assert "dpo-bandit" in proc.stdout and "nash-games" in proc.stdout and "omwu" in proc.stdout


def test_other_commands_run_with_a_broken_plugin(plugins, tmp_path):
    """``list NAME``, a run, and a refusal by a domain, in one interpreter (one plugin load, one warning)."""
    bad, _ = plugins
    out = tmp_path / "run"
    script = ("import sys; from alignjax.cli import main\n"
              "codes = [main(['list', 'nash-dynamics']),\n"
              f"         main(['run', 'nash-dynamics', '--set', 'num_steps=20', '--set', 'log_every=10', '--no-progress', "
              f"'--out', {str(out)!r}]),\n"
              f"         main(['run', 'nash-dynamics', '--set', 'algorithm=omwu', '--set', 'eta=-1', '--out', "
              f"{str(tmp_path / 'refused')!r}])]\n"
              "print('codes', codes)\n")
    proc = _run(["-c", script], _env(bad))
    assert "codes [0, 0, 2]" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "omwu" in proc.stdout and (out / "metrics.csv").exists()
    assert len(_warnings(proc.stderr)) == 1 and "omwu needs eta" in proc.stderr, proc.stderr[-2000:]


def test_test_collection_survives_a_broken_plugin(plugins):
    bad, _ = plugins
    proc = _run(["-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "tests/test_registry.py",
                 "tests/test_domains.py"], _env(bad))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error" not in proc.stdout.lower().split("collected")[-1], proc.stdout[-2000:]


def test_a_broken_experiments_module_is_isolated_in_process(tmp_path, capsys):
    """An ``experiments/`` module with an error next to a good one: the good one registers, the broken one
    registers nothing and is named in :func:`alignjax.registry.broken_plugins`."""
    import alignjax_experiments

    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "zz_broken.py").write_text(PARTIAL)
    (folder / "zz_good.py").write_text("from alignjax.registry import LOSSES\n"
                                       "LOSSES.register('zz_good_loss', lambda a, b, c, d, *, beta: a - b)\n")
    registry.load_plugins()  # the built-ins first: restoring a registry captured before them would drop them
    regs = (LOSSES, DYNAMICS, EXPERIMENTS, SUITES, TRAINERS)
    before = [dict(r._entries) for r in regs]
    broken_before, loaded = dict(registry._BROKEN), registry._loaded
    alignjax_experiments.__path__.append(str(folder))
    try:
        registry._loaded = False
        capsys.readouterr()
        registry.load_plugins()
        err = capsys.readouterr().err
        file = str(folder / "zz_broken.py")
        assert _warnings(err) == [WARNING.format(file, "RuntimeError: planted failure")]
        assert registry.broken_plugins()[file] == "RuntimeError: planted failure"
        assert "zz_good_loss" in LOSSES and "half_registered" not in LOSSES
        assert f"{registry.EXPERIMENTS_PACKAGE}.zz_broken" not in sys.modules
    finally:
        alignjax_experiments.__path__.remove(str(folder))
        registry._loaded = loaded
        registry._BROKEN.clear()
        registry._BROKEN.update(broken_before)
        for n in ("zz_broken", "zz_good"):
            sys.modules.pop(f"{registry.EXPERIMENTS_PACKAGE}.{n}", None)
        for r, entries in zip(regs, before):
            r._entries.clear()
            r._entries.update(entries)


def test_every_library_module_that_registers_is_loaded_before_the_plugins():
    """A failed plugin's entries are undone whole; that is right only if no plugin's import is the first
    to import a library module that registers built-in entries."""
    lib = ROOT / "alignjax"
    registering = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in lib.rglob("*.py")
                   if p.name != "registry.py" and any(f"{r}.register(" in p.read_text() for r in
                                                      ("LOSSES", "DYNAMICS", "TRAINERS", "EXPERIMENTS", "SUITES"))}
    registering = {m.removesuffix(".__init__") for m in registering}
    loaded = set(registry._BUILTIN_MODULES)
    missing = {m for m in registering if m not in loaded and not any(m.startswith(b + ".") for b in loaded)}
    assert not missing, f"add to registry._BUILTIN_MODULES: {sorted(missing)}"


def test_importing_the_library_imports_no_plugin_and_a_suite_module_runs_as_a_script():
    """Found by `make atlas-paper` (2026-12-07): `alignjax.dynamics.sampled` read a game loss's domains through
    `GAME_LOSSES.entry`, which loaded every plugin while the library was still importing; so `python -m
    alignjax_experiments.atlas` (which registers its suite as `__main__`) met its own module imported as a plugin
    and failed with "suite 'atlas' is already registered"."""
    code = "import sys, alignjax.dynamics, alignjax.rlhf, alignjax.hypo; print(sorted(m for m in sys.modules if m.startswith('alignjax_experiments')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    for module in ("atlas",):  # its page generator: usage, not a traceback (the others share the mechanism)
        proc = subprocess.run([sys.executable, "-m", f"alignjax_experiments.{module}"], cwd=ROOT, capture_output=True,
                              text=True)
        assert proc.returncode == 1 and proc.stderr.startswith("usage:") and "Traceback" not in proc.stderr, proc.stderr


def test_the_same_definition_registered_twice_replaces_a_different_one_fails(tmp_path):
    """Only a module that ran as a script (``__main__``) and was imported again may register its entry twice;
    two definitions in one module (copy-paste, two closures of a factory) and a built-in's own object registered
    again without ``replace=True`` stay duplicates (found by a review: a looser rule hid all three)."""
    import importlib.util
    import runpy

    from alignjax.registry import Registry

    src = tmp_path / "plug.py"
    src.write_text("def suite(ctx):\n    return []\n\n\ndef make(k):\n    def loss(x):\n        return k * x\n    return loss\n")
    as_script = runpy.run_path(str(src), run_name="__main__")["suite"]
    spec = importlib.util.spec_from_file_location("alignjax_test_plug", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reg = Registry("suite")
    reg.register("x", as_script)
    reg.register("x", module.suite)  # the script's definition, imported as a module: replaces
    assert reg.get("x") is module.suite
    with pytest.raises(ValueError, match="already registered"):
        reg.register("x", module.suite)  # the same object from the same module: a duplicate
    reg.register("y", module.make(1.0))
    with pytest.raises(ValueError, match="already registered"):
        reg.register("y", module.make(9.0))  # two closures of one factory
    with pytest.raises(ValueError, match="already registered"):
        DYNAMICS.register("omd", DYNAMICS.get("omd"), hparams={"beta": 0.1, "eta": 1.0})  # a built-in, again
    assert DYNAMICS.entry("omd").meta["kind"] == "exact"
