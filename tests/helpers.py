"""What the tests share: the ``unlearn`` console command in a child process, a free local port,
a workdir that reuses models trained once per session, and the tiny configs (image and
text-to-image) the fast tests build their models from (seconds, no downloads).

Test modules import it as ``from helpers import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
UNLEARN = str(Path(sys.executable).with_name("unlearn"))

#: the tiny image config: an 8x8 DDPM on sklearn's digits (``configs/tiny.yaml`` has the same
#: pretrained cache entry)
TINY = [
    "data.name=digits",
    "data.resolution=8",
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.attention=false",
    "model.num_train_timesteps=100",
    "pretrain.steps=30",
    "pretrain.checkpoint_every=10",
    "pretrain.classifier_steps=150",
    "eval.num_samples=60",
    "eval.sampler_steps=4",
    "eval.proxy_batch=16",
    "eval.elbo_timesteps=5",
    "unlearn.steps=6",
    "unlearn.batch_size=8",
    "forget.classes=[3]",
    "tracking.enabled=false",
]

#: the tiny text-to-image config: 8x8 images, 4x4 latents, a one-layer text encoder
T2I_TINY = [
    "data.name=digits",
    "data.resolution=8",
    "model.kind=t2i",
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.num_train_timesteps=100",
    "model.beta_schedule=scaled_linear",
    "t2i.text_dim=16",
    "t2i.text_layers=1",
    "t2i.vae_channels=[8,16]",
    "t2i.vae_steps=6",
    "t2i.attention_head_dim=4",
    "t2i.max_length=12",
    "t2i.samples_per_prompt=4",
    "pretrain.steps=6",
    "pretrain.batch_size=8",
    "pretrain.checkpoint_every=3",
    "pretrain.classifier_steps=20",
    "eval.sampler_steps=3",
    "eval.proxy_batch=8",
    "forget.concept=seven",
    "forget.prompts=[a handwritten digit seven]",
    "forget.paraphrases=[the number 7]",
    "forget.retain_prompts=[a handwritten digit one, the digit two]",
    "method.name=esd",
    "method.lam=0.8",
    "unlearn.steps=3",
    "unlearn.batch_size=8",
    "tracking.enabled=false",
]


#: the tiny config with an SDXL-format pipeline (two text encoders of width 16)
SDXL_TINY = [("model.kind=sdxl" if s == "model.kind=t2i" else s) for s in T2I_TINY]


def sdxl_cfg(*extra: str, workdir: Path | None = None):
    """The tiny SDXL config with ``extra`` overrides (and ``workdir``, if given)."""
    from unlearn.config import load_config

    wd = [f"workdir={workdir}"] if workdir is not None else []
    return load_config(None, [*SDXL_TINY, *wd, *extra])


#: a tiny image-completion config (digits at 8x8, a 4x4 mask grid): both kinds, seconds
I2I_TINY = [
    "data.name=digits",
    "data.resolution=8",
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.attention=false",
    "model.num_train_timesteps=100",
    "i2i.patch_size=2",
    "i2i.width=16",
    "i2i.layers=1",
    "i2i.heads=2",
    "i2i.decoder_width=16",
    "i2i.decoder_layers=1",
    "i2i.eval_images=8",
    "pretrain.steps=3",
    "pretrain.checkpoint_every=3",
    "pretrain.classifier_steps=150",
    "eval.sampler_steps=2",
    "eval.batch_size=16",
    "eval.proxy_batch=8",
    "audit.num_samples=10",
    "forget.classes=[3]",
    "unlearn.steps=2",
    "unlearn.batch_size=8",
]


def i2i_cfg(kind: str, workdir: Path, *extra: str):
    """The tiny i2i config of ``kind`` (``inpaint_ddpm`` or ``mae``) in ``workdir``."""
    from unlearn.config import load_config

    return load_config(
        REPO / "configs" / "i2i_demo.yaml",
        [*I2I_TINY, f"model.kind={kind}", f"workdir={workdir}", *extra],
    )


def tiny_model(kind: str) -> torch.nn.Module:
    """A seeded tiny model of ``kind`` (8x8, one channel, 10 classes), built from config."""
    from unlearn.config import ModelConfig
    from unlearn.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(
        kind=kind,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        attention=False,
        num_train_timesteps=100,
        latent_channels=2,
    )
    return build_model(cfg, channels=1, resolution=8, num_classes=10)


def t2i_cfg(*extra: str, workdir: Path | None = None):
    """The tiny text-to-image config with ``extra`` overrides (and ``workdir``, if given)."""
    from unlearn.config import load_config

    wd = [f"workdir={workdir}"] if workdir is not None else []
    return load_config(None, [*T2I_TINY, *wd, *extra])


def tiny_pipeline(seed: int = 0):
    """An untrained tiny text-to-image pipeline, seeded."""
    from unlearn.data.captions import VOCABULARY
    from unlearn.models.t2i import build_t2i

    torch.manual_seed(seed)
    return build_t2i(t2i_cfg(), VOCABULARY, channels=1, resolution=8)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child ``unlearn``, without the caller's ``RAY_*`` and
    ``MLFLOW_*`` settings (a child reaches no cluster or tracking server by accident), help
    text 200 columns wide, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    return {**env, "COLUMNS": "200", **extra}


def cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``unlearn ARGS`` through the real console command; ``env`` adds to :func:`clean_env`."""
    return subprocess.run(
        [UNLEARN, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=clean_env(**(env or {})),
    )


def cli_here(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``unlearn ARGS`` run in this process through the console entry point, same result shape
    as :func:`cli` (exit code, stdout, stderr) without an interpreter start-up per call.

    For input that is refused before any work (exit code 2 and one line): a command that gets
    as far as doing work belongs in :func:`cli`, in a child of its own. The environment, the
    working directory and ``sys.argv`` are restored afterwards.
    """
    import contextlib
    import io
    import traceback

    from unlearn.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    os.environ.clear()
    os.environ.update(clean_env(**(env or {})))
    sys.argv = ["unlearn", *args]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["unlearn", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A local TCP port nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def share_pretrained(workdir: Path, source: Path) -> Path:
    """``workdir`` (made if missing) whose ``pretrained`` folder links to ``source``'s, so it
    reuses the models a session fixture trained once; they are shared, never to be changed."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "pretrained").exists():
        (workdir / "pretrained").symlink_to(source / "pretrained", target_is_directory=True)
    return workdir
