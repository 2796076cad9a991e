"""Method options belong to their method: kept per method in the config, the selected
method's used, another method's never handed to it (config, ``--set``, tuners, bench), and
an option under the wrong method refused with one line naming the method that takes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO, cli, cli_here

from unlearn.config import ConfigError, MethodConfig, load_config, with_overrides

T2I = REPO / "configs" / "t2i_demo.yaml"
ENV = {"OMP_NUM_THREADS": "1", "CI": "1"}


def method(*sets: str, path: Path = T2I):
    from unlearn.methods import get_method

    return get_method(load_config(path, list(sets)).method)


@pytest.fixture
def flat_t2i(tmp_path: Path) -> Path:
    """The t2i demo config with ESD's options in the direct (flat) form: ``{eta: 2.0}``."""
    d = yaml.safe_load(T2I.read_text())
    d["method"]["options"] = {"eta": 2.0}
    p = tmp_path / "flat.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_the_selected_methods_options_are_used():
    assert load_config(T2I).method.options == {"esd": {"eta": 2.5}}
    rest = {"xt": "images", "steps": 50, "guidance": 3.0}  # ESD's other options, defaults
    assert method().options == {"eta": 2.5, **rest}
    assert method("method.options.esd.eta=0.5").options == {"eta": 0.5, **rest}
    assert method("method.options.eta=0.25").options == {"eta": 0.25, **rest}  # over esd's
    fdiv = method("method.name=fdiv", "method.options.fdiv.divergence=chi2")
    assert fdiv.name == "fdiv" and fdiv.options["divergence"] == "chi2"
    # another method's entry is kept (and checked) but never reaches the selected one
    assert method("method.options.fdiv.divergence=chi2").options == {"eta": 2.5, **rest}


@pytest.mark.parametrize(
    "sets, name",
    [
        (["method.name=fdiv", "agent.name=variational"], "fdiv"),
        (["model.train=lora", "method.name=neggrad"], "neggrad"),
        (["method.name=constrained", "method.options.target=reverse_kl"], "constrained"),
    ],
)
@pytest.mark.parametrize("form", ["per-method", "flat"])
def test_switching_method_leaves_the_configs_options_behind(sets, name, form, flat_t2i):
    m = method(*sets, path=T2I if form == "per-method" else flat_t2i)
    assert m.name == name
    assert "eta" not in m.options


def test_direct_options_belong_to_the_method_named_beside_them(flat_t2i):
    assert method(path=flat_t2i).options["eta"] == 2.0
    cfg = load_config(flat_t2i, ["method.name=fdiv", "method.options.divergence=hellinger"])
    assert cfg.method.options == {"esd": {"eta": 2.0}, "divergence": "hellinger"}
    assert cfg.method.options_of() == {"divergence": "hellinger"}
    assert cfg.method.options_of("esd") == {"eta": 2.0}
    # switching back finds ESD's options under its name
    back = with_overrides(cfg, ["method.name=esd"])
    assert back.method.options_of() == {"eta": 2.0}
    assert back.method.options_of("fdiv") == {"divergence": "hellinger"}
    # the error of a bad direct option names it as before
    with pytest.raises(ConfigError, match=r"^method.options.eta: -1 is not allowed"):
        method("method.options.eta=-1", path=flat_t2i)


def test_select_pins_direct_options_under_their_method():
    m = MethodConfig(name="esd", options={"eta": 3.0, "fdiv": {"divergence": "kl"}})
    assert m.select("esd") is m
    f = m.select("fdiv")
    assert f.options == {"esd": {"eta": 3.0}, "fdiv": {"divergence": "kl"}}
    assert f.options_of() == {"divergence": "kl"} and f.options_of("esd") == {"eta": 3.0}


def test_tuner_trials_and_bench_cells_get_their_own_methods_options():
    from unlearn.bench.matrix import method_config
    from unlearn.tuners.space import apply_params

    cfg = load_config(T2I, ["method.options.fdiv.divergence=chi2"])
    trial = apply_params(cfg, {"method.name": "fdiv", "method.lam": 0.5})
    assert trial.method.options_of() == {"divergence": "chi2"}
    trial = apply_params(cfg, {"method.name": "esd", "method.options.eta": 1.5})
    assert trial.method.options_of() == {"eta": 1.5}
    trial = apply_params(cfg, {"method.name": "vdu"})
    assert trial.method.options_of() == {}
    assert method_config(cfg, "fdiv").options == {"divergence": "chi2"}
    assert method_config(cfg, "esd").options == {"eta": 2.5}
    assert method_config(cfg, "naive").options == {}


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["method.options.esd.divergence=kl"],
            "method.options.esd.divergence: unknown option 'divergence'; allowed options: eta, guidance, steps, xt; "
            "'divergence' is an option of method fdiv (method.options.fdiv.divergence)",
        ),
        (
            ["method.options.divergence=kl"],
            "method.options.divergence: unknown option 'divergence'; allowed options: eta, guidance, steps, xt; "
            "'divergence' is an option of method fdiv",
        ),
        (
            ["method.options.fdiv.eta=2"],
            "method.options.fdiv.eta: unknown option 'eta'; allowed options: alpha, anchor, "
            "anchor_class, divergence, max_delta; 'eta' is an option of methods esd, erasediff "
            "(method.options.esd.eta)",
        ),
        (["method.options.bogus=1"], "method.options.bogus: unknown option 'bogus'; allowed"),
        (["method.options.bogus.x=1"], "method.options.bogus: unknown option or method 'bogus'"),
        (["method.options.fdiv.divergence=tv"], "method.options.fdiv.divergence: 'tv' is not"),
        (["method.options.eta={a: 1}"], "method.options.eta: {'a': 1} is not allowed"),
    ],
)
def test_options_under_the_wrong_method_are_refused(sets, message):
    with pytest.raises(ConfigError) as e:
        method(*sets)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_method_option_may_not_take_a_mapping():
    from unlearn.methods import METHODS, Opt, UnlearningMethod, register_method

    assert all(o.kind is not dict for cls in METHODS.values() for o in cls.OPTIONS.values())

    class Bad(UnlearningMethod):
        name = "bad"
        OPTIONS = {"m": Opt({}, kind=dict)}

        def loss(self, *a):
            raise NotImplementedError

    with pytest.raises(TypeError, match="may not take a mapping"):
        register_method("bad", Bad)


@pytest.mark.parametrize(
    "sets, fragment",
    [
        (["method.options.esd.divergence=kl"], "'divergence' is an option of method fdiv"),
        (["method.options.bogus=1"], "method.options.bogus: unknown option 'bogus'"),
    ],
)
def test_cli_wrong_method_option_exits_2_with_one_line(sets, fragment, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    r = cli_here("run", "--config", str(T2I), "--set", f"workdir={tmp_path}", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


README_T2I = [
    "unlearn run --config configs/t2i_demo.yaml --set method.name=fdiv --set agent.name=variational",
]


@pytest.mark.parametrize("command", README_T2I, ids=["fdiv-variational"])
@pytest.mark.slow
def test_readme_method_switches_run(command, tmp_path):
    """The docs' commands that switch the demo config's method, run for two steps."""
    assert command in (REPO / "docs" / "t2i.md").read_text()
    budget = ["--set", "unlearn.steps=2", "--set", "tracking.enabled=false", "--no-eval"]
    args = [a.replace("configs/", f"{REPO}/configs/") for a in command.split()[1:]]
    r = cli(
        *args, "--set", f"workdir={tmp_path}", *budget, "--json", cwd=tmp_path, timeout=600, env=ENV
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    res = json.loads(r.stdout[r.stdout.find("{") :])
    assert res["status"] == "finished" and len(res["lambdas"]) == 2
