"""The demo's text-to-image part: erase "seven" from the shipped pipeline with ESD.

Runs ``unlearn run`` on the embedded ``t2i_demo.yaml`` (the shipped pipeline and its
classifier, the demo's workdir and tracking) and adds a report section with the metrics
before / after and the grids of an erased prompt, a held-out paraphrase and a retain prompt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unlearn.config import Config, load_config
from unlearn.runtime import ProgressFn

T2I_DEMO_CONFIG = Path(__file__).parent / "assets" / "t2i_demo.yaml"


def t2i_demo_config(cfg: Config) -> Config:
    """The embedded t2i demo config with the calling demo's workdir, device and tracking."""
    t = cfg.tracking
    return load_config(
        T2I_DEMO_CONFIG,
        [
            f"workdir={cfg.workdir}",
            f"device={cfg.device}",
            f"tracking.enabled={str(t.enabled).lower()}",
            f"tracking.uri={t.uri}",
        ],
    )


def _grid(run_dir: Path, side: str, prompts: tuple[str, ...], prompt: str) -> Path:
    i = prompts.index(prompt)
    return next((run_dir / side).glob(f"{i:02d}_*.png"))


def t2i_section(cfg: Config, sections: list[str], out: Path, progress: ProgressFn) -> dict:
    """Run ESD on the shipped pipeline; append the section; returns the run's result dict."""
    from unlearn.experiment import run

    tcfg = t2i_demo_config(cfg)
    res = run(tcfg, progress)
    run_dir = Path(res.model_dir).parent
    before, after = res.before, res.after
    f = tcfg.forget
    shown = [("erased prompt", f.prompts[0])]
    if f.paraphrases:
        shown.append(("held-out paraphrase", f.paraphrases[0]))
    shown.append(
        ("retain prompt", after.prompts[-1] if not f.retain_prompts else f.retain_prompts[0])
    )
    lines = [
        "## Text-to-image: erasing a concept with ESD",
        "",
        f"The shipped pipeline (`{tcfg.name}`), concept {f.concept!r}: `{tcfg.method.name}` "
        f"(η = {tcfg.method.options.get('eta', 1.0)}, λ = {tcfg.method.lam}), "
        f"{res.steps} steps, batch {tcfg.unlearn.batch_size}, model.train={tcfg.model.train}, "
        f"{res.wall_time:.1f} s. {tcfg.t2i.samples_per_prompt} images per prompt, "
        f"{tcfg.eval.sampler_steps} DDIM steps, guidance {tcfg.t2i.guidance}.",
        "",
        "| | concept rate | paraphrase concept rate | retain accuracy | FID |",
        "|---|---|---|---|---|",
    ]
    for name, r in (("before", before), ("after", after)):
        para = "n/a" if r.paraphrase_concept_rate is None else f"{r.paraphrase_concept_rate:.3f}"
        lines.append(
            f"| {name} | {r.concept_rate:.3f} | {para} | {r.retain_accuracy:.3f} | {r.fid:.2f} |"
        )
    lines += ["", "| prompt | before | after |", "|---|---|---|"]
    for k, (what, prompt) in enumerate(shown):
        cells = []
        for side in ("before", "after"):
            name = f"t2i_{side}_{k}.png"
            shutil.copyfile(_grid(run_dir, side, before.prompts, prompt), out / name)
            cells.append(f"![{side}]({name})")
        lines.append(f"| {what}: “{prompt}” | {cells[0]} | {cells[1]} |")
    lines += ["", f"Unlearned pipeline (loads in plain diffusers): `{res.model_dir}`", ""]
    sections.append("\n".join(lines))
    return res.to_dict()
