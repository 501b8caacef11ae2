"""docs/extending.md, executed: its modules register entries that meet the registry contracts,
and its command lines run.

Every python block of the page is the content of one module file (its first line names it,
``# experiments/NAME.py``). The fixture :func:`fork` writes them into a temporary folder that
it adds to the ``alignjax_experiments`` package (the repository's ``experiments/`` folder) and
lets :func:`alignjax.registry.load_plugins` discover them, exactly as it discovers a file
dropped into ``experiments/``. Then: the loss passes the loss contract, the dynamic the exact
dynamic contract, the experiment runs, and each ``alignjax ...`` line of the page runs in-process
(``alignjax.cli.main``) with small step counts and sizes and exits 0; a sweep gives one config
per swept value with different results, and the suite reproduces at ``--smoke`` with its claim
computed and holding, and resumes from its saved stages. Whatever the modules registered is
removed afterwards, so other tests see the registries unchanged.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.cli import main
from alignjax.registry import DYNAMICS, EXPERIMENTS, LOSSES, SUITES, TRAINERS
from test_registry import (check_exact_dynamic_contract, check_exact_dynamic_probes, check_experiment_runs,
                           check_loss_contract, check_loss_float32_range)

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
MODULES = {"my_hinge.py", "damped_omd.py", "my_experiment.py", "my_suite.py"}
SMALL_STEPS = ["--set", "num_steps=4", "--set", "log_every=2"]
TINY = {"num_prompts": 2, "num_responses": 4}


def doc_modules() -> dict[str, str]:
    """``{file name: source}`` of every python block of the page."""
    out = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        m = re.match(r"# experiments/(\w+\.py)\n", block)
        assert m, f"a python block of {DOC.name} is not a module file: {block.splitlines()[0]!r}"
        out[m.group(1)] = block
    return out


def doc_commands() -> list[list[str]]:
    """The argument lists of every ``alignjax ...`` line of the page's console blocks."""
    cmds = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in filter(str.strip, block.splitlines()):
            words = shlex.split(line, comments=True)
            assert words[0] == "alignjax", line
            cmds.append(words[1:])
    return cmds


def test_the_page_shows_one_module_per_entry_and_the_commands():
    assert set(doc_modules()) == MODULES
    cmds = [" ".join(c) for c in doc_commands()]
    for expected in ("run dpo-bandit --set loss=my_hinge --sweep my_hinge.delta=0.5,1",
                     "run nash-dynamics --set algorithm=damped-omd --sweep damped-omd.damping=0,0.5,0.9",
                     "reproduce my-suite --smoke"):
        assert expected in cmds, expected
    assert any(c.startswith("run my-experiment ") for c in cmds), cmds
    assert not re.search(r"(?<![\w.])/(work|home|tmp|Users)/", DOC.read_text())  # no path outside the repository


@pytest.fixture(scope="module")
def fork(tmp_path_factory):
    """The page's modules, discovered as files of the ``experiments/`` folder; removed after."""
    import alignjax_experiments

    from alignjax import registry

    registry.load_plugins()  # the built-ins first: the cleanup below removes whatever is not in `before`
    registries = (LOSSES, DYNAMICS, EXPERIMENTS, SUITES, TRAINERS)
    before = [dict(r._entries) for r in registries]
    folder = tmp_path_factory.mktemp("fork") / "experiments"
    folder.mkdir()
    sources = doc_modules()
    for name, text in sources.items():
        (folder / name).write_text(text)
    names = [f"{registry.EXPERIMENTS_PACKAGE}.{Path(n).stem}" for n in sources]
    loaded = registry._loaded
    alignjax_experiments.__path__.append(str(folder))
    try:
        registry._loaded = False
        registry.load_plugins()  # what the first registry lookup does
        yield {n.rsplit(".", 1)[1]: sys.modules[n] for n in names}
    finally:
        alignjax_experiments.__path__.remove(str(folder))
        registry._loaded = loaded
        for n in names:
            sys.modules.pop(n, None)
        for r, entries in zip(registries, before):
            for extra in set(r._entries) - set(entries):
                r._entries.pop(extra)
    assert [dict(r._entries) for r in registries] == before


def test_the_modules_are_discovered_and_register_their_entries(fork):
    assert set(fork) == {Path(n).stem for n in MODULES}
    assert LOSSES.entry("my_hinge").hparams == {"delta": 1.0}
    entry = DYNAMICS.entry("damped-omd")
    assert entry.meta["kind"] == "exact" and entry.hparams == {"beta": 0.1, "eta": 0.4, "damping": 0.5}
    assert "my-experiment" in EXPERIMENTS and "my-suite" in SUITES


def test_the_loss_meets_the_contract(fork):
    entry = LOSSES.entry("my_hinge")
    check_loss_contract(entry)
    check_loss_float32_range(entry)
    pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])
    rc = rr = jnp.array([-2.0, -2.0])  # margins h = 2 and -1
    np.testing.assert_allclose(np.asarray(entry.obj(pc, pr, rc, rr, beta=0.5, delta=1.0)), [0.0, 1.5], atol=1e-6)


def test_the_dynamic_meets_the_contract_and_keeps_omds_fixed_point(fork):
    from alignjax import games, prefs
    from alignjax.dynamics import check_hparams, exact_dynamics, simulate

    check_exact_dynamic_contract(DYNAMICS.entry("damped-omd"))
    check_exact_dynamic_probes(DYNAMICS.entry("damped-omd"))  # its declared damping domain [0, 1), 300 updates
    assert str(DYNAMICS.entry("damped-omd").domains["damping"]) == "[0, 1)"
    # damping = 0 is OMD's update exactly; damping > 0 moves less
    P = prefs.random_game(jax.random.key(0), 5)
    log_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (5,)))
    damped, omd = exact_dynamics("damped-omd"), exact_dynamics("omd")
    hp = {"beta": jnp.float32(0.5), "eta": jnp.float32(0.5)}
    s0 = omd.init(log_ref, P, log_ref, hp)
    one = omd.update(s0, P, log_ref, hp).log_pi
    np.testing.assert_allclose(damped.update(s0, P, log_ref, {**hp, "damping": 0.0}).log_pi, one, atol=1e-6)
    half = damped.update(s0, P, log_ref, {**hp, "damping": 0.5}).log_pi
    assert 0 < float(jnp.max(jnp.abs(half - log_ref))) < float(jnp.max(jnp.abs(one - log_ref)))
    # every damping reaches the same regularised equilibrium (one compile for the three)
    pi_ref = jnp.exp(log_ref)
    pis = simulate("damped-omd", P, pi_ref, hparams={"beta": 0.5, "eta": 0.5, "damping": np.array([0.0, 0.5, 0.9])},
                   num_steps=400, log_every=400)[:, -1]
    np.testing.assert_allclose(pis, np.broadcast_to(pis[0], pis.shape), atol=1e-5)
    gaps = games.regularized_gap(P, pis, pi_ref, 0.5)
    assert float(jnp.max(gaps)) < 1e-6, gaps
    # its condition: one line naming the bad value, before any compute
    for bad, message in (({"damping": 1.0}, "damping in [0, 1); got damping = 1"),
                         ({"eta": 4.0, "beta": 0.5}, "damped-omd needs eta*beta <= 1 (the (1 - eta*beta) weight "
                                                     "of log pi_t must be >= 0); got eta*beta = 2")):
        with pytest.raises(ValueError, match=re.escape(message)):
            check_hparams("damped-omd", {"beta": 0.1, "eta": 0.4, "damping": 0.5, **bad})


def test_the_experiment_runs_any_exact_dynamic_and_the_new_entries_run_in_the_builtin_experiments(fork):
    check_experiment_runs(EXPERIMENTS.get("my-experiment"))
    check_experiment_runs(EXPERIMENTS.get("nash-dynamics"), {"algorithm": "damped-omd"})
    check_experiment_runs(EXPERIMENTS.get("dpo-bandit"), {"loss": "my_hinge"})


def test_bad_noise_is_refused_before_any_compute(fork, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["run", "my-experiment", "--set", "noise=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "noise must lie in [0, 1); got [1.0]" in err and err.count("\n") == 1
    assert not out.exists()


def _small(cmd: list[str], out: Path) -> list[str]:
    """The command with few steps, tiny sizes, no progress bar and its results in ``out``."""
    if cmd[0] == "list":
        return cmd
    if cmd[0] != "run":
        return [*cmd, "--out", str(out)]
    config = EXPERIMENTS.get(cmd[1]).config
    sizes = [a for k, v in TINY.items() if k in config for a in ("--set", f"{k}={v}")]
    return [*cmd, *SMALL_STEPS, *sizes, "--no-progress", "--out", str(out)]


def _check_sweep(out: Path, cmd: list[str]) -> None:
    """One config per combination of swept values, in ``arrays.npz`` and ``metrics.csv``, and
    the results differ along every swept axis."""
    settings = json.loads((out / "config.json").read_text())
    axes = {k: [float(x) for x in v] for k, v in settings["sweep"].items()}
    swept = [w.split("=", 1) for f, w in zip(cmd, cmd[1:]) if f == "--sweep"]
    assert {k: [float(x) for x in v.split(",")] for k, v in swept} == axes
    configs = math.prod(len(v) for v in axes.values())
    seeds = settings["seeds"]
    with np.load(out / "arrays.npz") as z:
        assert list(z["axes"]) == list(axes)
        scalar = {k: z[k] for k in z.files if f"dims.{k}" in z.files and len(z[f"dims.{k}"]) == 3}
        assert scalar, z.files
        for k, v in axes.items():
            assert sorted(set(z[f"hparam.{k}"].tolist())) == sorted(v), k
        final = np.stack([m[:, :, -1].mean(axis=1) for m in scalar.values()], axis=1)  # (configs, metrics)
        assert final.shape[0] == configs and np.all(np.isfinite(final))
        for k, values in axes.items():
            per_value = [final[z[f"hparam.{k}"] == v].mean(axis=0) for v in values]
            assert any(not np.array_equal(p, per_value[0]) for p in per_value[1:]), f"{k} changes nothing: {per_value}"
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    assert set(axes) <= set(header)
    assert len(rows) - 1 == configs * seeds * 3  # steps 0, 2, 4
    assert len({r.split(",")[header.index("config")] for r in rows[1:]}) == configs


def _check_suite(out: Path, cmd: list[str], fork, monkeypatch, capsys) -> None:
    """The claim is computed from measured numbers and holds; its stages are saved; a killed run
    (summary not written) resumes from them without recomputing."""
    folder = out / "my-suite"
    summary = json.loads((folder / "summary.json").read_text())
    (c,) = summary["claims"]
    assert c["id"] == "noise-is-regularisation" and c["holds"] is True, c
    assert 0 <= c["measured"]["max_abs_diff"] < 1e-4 and 0 <= c["measured"]["max_gap"] < 1e-6, c
    assert {p.name for p in (folder / "stages").iterdir()} == {"noisy.npz", "clean.npz"}
    if "--smoke" not in cmd:
        return
    (folder / "summary.json").unlink()

    class NoRuns:  # the runner of a resumed suite: building it is free, running it would recompute
        def run(self, *args, **kwargs):
            raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(fork["my_suite"], "compile_sweep", lambda *args, **kwargs: NoRuns())
    capsys.readouterr()
    assert main([*cmd, "--resume", "--out", str(out)]) == 0, capsys.readouterr().err
    again = json.loads((folder / "summary.json").read_text())
    assert again["claims"][0]["measured"] == c["measured"] and again["claims"][0]["holds"]


@pytest.mark.parametrize("cmd", doc_commands(), ids=" ".join)
def test_the_command_runs(cmd, fork, tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    code = main(_small(cmd, out))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    if cmd[0] == "list":
        assert "damped-omd.damping" in captured.out and "noise" in captured.out
    elif cmd[0] == "run":
        assert (out / "summary.json").is_file()
        if "--sweep" in cmd:
            _check_sweep(out, cmd)
    else:
        _check_suite(out, cmd, fork, monkeypatch, capsys)
