"""The env over concepts on text-to-image pipelines: instances are digit concepts (train and
held-out sets from the config), re-targeted in memory, checked by Gymnasium's env checker."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from helpers import t2i_cfg

ENV = [
    "env.train_instances=[1,3]",
    "env.test_instances=[2]",
    "env.decisions=2",
    "env.steps_per_decision=1",
    "env.proxy_every=1",
    "env.proxy_batch=4",
    "env.final_eval_samples=10",
    "forget.retain_prompts=[a handwritten digit one, a handwritten digit two, the digit five]",
    "env.instances={thick: {concept: thick, prompts: [a handwritten digit with thick strokes], "
    "paraphrases: [a digit with thick strokes]}}",
]


@pytest.fixture(scope="module")
def env(t2i_workdir):
    import unlearn.envs  # noqa: F401 (registers the env)

    e = gym.make("unlearn/Unlearning-v0", config=t2i_cfg(*ENV, workdir=t2i_workdir))
    yield e
    e.close()


def test_instance_forget_exchanges_the_concept_digit():
    from unlearn.config import load_config
    from unlearn.families import instance_forget

    cfg = t2i_cfg(*ENV)
    three = instance_forget(cfg, 3)
    assert three.concept == "three"
    assert three.prompts == ("a handwritten digit three",)
    assert three.paraphrases == ("the number 3",)
    one = instance_forget(cfg, 1)  # the retain prompt naming 1 now names 7
    assert one.retain_prompts == (
        "a handwritten digit seven",
        "a handwritten digit two",
        "the digit five",
    )
    assert instance_forget(load_config(None, []), 4).classes == (4,)
    # a named instance: its own fields; what to forget and the retain prompts start empty,
    # the anchor is the config's
    thick = instance_forget(cfg, "thick")
    assert thick.concept == "thick" and thick.retain_prompts == ()
    assert thick.prompts == ("a handwritten digit with thick strokes",)
    assert thick.anchor == cfg.forget.anchor


def test_a_named_attribute_instance_forgets_its_own_prompts(env):
    """A named instance (env.instances) is reset to like a class: its own concept, prompts,
    paraphrases and, for an attribute, every digit as a retain prompt."""
    u = env.unwrapped
    _, info = env.reset(seed=0, options={"instance": "thick"})
    assert info["instance"] == "thick" and info["split"] == "custom"
    spec = u.unlearner.eval_data.spec
    assert spec.concept == "thick" and spec.target == ("attribute", "thick")
    assert spec.paraphrases == ("a digit with thick strokes",)
    assert len(spec.retain) == 10 and all(p.startswith("a handwritten digit ") for p in spec.retain)
    forget_ids = set(u.unlearner.split.forget.labels.tolist())
    prompts = {u.unlearner.model.prompts[i] for i in forget_ids}
    assert prompts == {"a handwritten digit with thick strokes"}
    done = False
    while not done:
        _, _, term, trunc, info = env.step(np.array([0.7], dtype=np.float32))
        done = term or trunc
    assert info["instance"] == "thick" and 0.0 <= info["eval/forget_rate"] <= 1.0
    with pytest.raises(ValueError, match="not a name of env.instances"):
        env.reset(seed=0, options={"instance": "thin"})


def test_env_episodes_forget_the_instance_concept(env):
    u = env.unwrapped
    _, info = env.reset(seed=0, options={"instance": 3})
    assert info["instance"] == 3
    spec = u.unlearner.eval_data.spec
    assert spec.concept == "three" and all("three" in p for p in spec.prompts)
    assert not any("three" in p for p in spec.retain)
    forget_ids = set(u.unlearner.split.forget.labels.tolist())
    assert {u.unlearner.model.prompts[i] for i in forget_ids} == {"a handwritten digit three"}
    done, ret = False, 0.0
    while not done:
        _, r, term, trunc, info = env.step(np.array([0.7], dtype=np.float32))
        ret += r
        done = term or trunc
    assert np.isfinite(ret) and np.isfinite(info["eval/forget_rate"])
    _, info = env.reset(seed=1, options={"split": "test"})
    assert info["instance"] == 2 and u.unlearner.eval_data.spec.concept == "two"


def test_switching_back_restores_the_instance_prompt_table(env):
    _, a = env.reset(seed=5, options={"instance": 1})
    env.reset(seed=5, options={"instance": 3})
    _, b = env.reset(seed=5, options={"instance": 1})
    assert (a["proxy_retain"], a["proxy_forget"]) == (b["proxy_retain"], b["proxy_forget"])


def test_t2i_env_passes_the_env_checker(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env.unwrapped, skip_render_check=True)


def test_non_digit_concept_is_refused_for_instances(t2i_workdir):
    import unlearn.envs  # noqa: F401
    from unlearn.config import ConfigError

    bad = t2i_cfg(*ENV, "forget.concept=thick", "forget.prompts=[a digit with thick strokes]")
    with pytest.raises(ConfigError, match="forget.concept: 'thick' is not allowed with env"):
        gym.make("unlearn/Unlearning-v0", config=dataclasses_workdir(bad, t2i_workdir))


def dataclasses_workdir(cfg, wd):
    import dataclasses

    return dataclasses.replace(cfg, workdir=str(wd))
