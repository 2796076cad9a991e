"""The demo's text-to-image part: erase "seven" from the shipped pipeline with ESD (static
λ) and with constrained reverse-KL under the dual-ascent λ agent.

Runs ``unlearn run`` on the embedded ``t2i_demo.yaml`` (the shipped pipeline and its
classifier, the demo's workdir and tracking), twice, and adds a report section with the
metrics before / after each and the grids of an erased prompt, a held-out paraphrase and a
retain prompt, and the dual agent's λ per step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unlearn.config import Config, load_config
from unlearn.runtime import ProgressFn

T2I_DEMO_CONFIG = Path(__file__).parent.parent / "assets" / "t2i_demo.yaml"


def t2i_demo_config(cfg: Config, samples_per_prompt: int | None = None) -> Config:
    """The embedded t2i demo config with the calling demo's workdir, device and tracking
    (and ``samples_per_prompt`` images per evaluated prompt, if given)."""
    t = cfg.tracking
    extra = [] if samples_per_prompt is None else [f"t2i.samples_per_prompt={samples_per_prompt}"]
    return load_config(
        T2I_DEMO_CONFIG,
        [
            f"workdir={cfg.workdir}",
            f"device={cfg.device}",
            f"tracking.enabled={str(t.enabled).lower()}",
            f"tracking.uri={t.uri}",
            *extra,
        ],
    )


def _grid(run_dir: Path, side: str, prompts: tuple[str, ...], prompt: str) -> Path:
    i = prompts.index(prompt)
    return next((run_dir / side).glob(f"{i:02d}_*.png"))


#: the second t2i run: reverse-KL negative guidance with a dual-ascent multiplier (λ adapts
#: to the method's constraint violation during the run), fewer steps than ESD's
SECOND = [
    "method.name=constrained",
    "method.options={target: reverse_kl}",
    "agent.name=dual",
    "unlearn.steps=40",
]


def t2i_section(
    cfg: Config,
    sections: list[str],
    out: Path,
    progress: ProgressFn,
    samples_per_prompt: int | None = None,
) -> dict:
    """Run ESD (static λ) and constrained reverse-KL (dual λ) on the shipped pipeline, the
    second reusing the first's before-evaluation; append the section; returns both runs'
    result dicts (``t2i``: ESD, ``t2i-constrained-dual``). ``samples_per_prompt``: images
    per evaluated prompt (None: the embedded config's)."""
    from unlearn.config import with_overrides
    from unlearn.run import run

    tcfg = t2i_demo_config(cfg, samples_per_prompt)
    res = run(tcfg, progress)
    ccfg = with_overrides(tcfg, SECOND)
    res2 = run(ccfg, progress, before=res.before)
    runs = [("ESD, static λ", tcfg, res), ("constrained reverse-KL, dual λ", ccfg, res2)]
    before = res.before
    f = tcfg.forget
    shown = [("erased prompt", f.prompts[0])]
    if f.paraphrases:
        shown.append(("held-out paraphrase", f.paraphrases[0]))
    shown.append(
        ("retain prompt", before.prompts[-1] if not f.retain_prompts else f.retain_prompts[0])
    )
    lam = res2.lambdas
    lines = [
        "## Text-to-image: erasing a concept with ESD and with constrained reverse-KL",
        "",
        f"The shipped pipeline (`{tcfg.name}`), concept {f.concept!r}, "
        f"model.train={tcfg.model.train}, batch {tcfg.unlearn.batch_size}, lr {tcfg.unlearn.lr}. "
        f"`{tcfg.method.name}` (η = {tcfg.method.options_of().get('eta', 1.0)}, static "
        f"λ = {tcfg.method.lam}): {res.steps} steps, {res.wall_time:.1f} s. "
        f"`{ccfg.method.name}` (target reverse_kl: negative guidance towards "
        f"ε₀(x_t,∅) − λ/(1−λ)·(ε₀(x_t,c) − ε₀(x_t,∅))) under the `dual` agent, which raises "
        f"λ while the forget loss stays below ratio × the original's: {res2.steps} steps, "
        f"{res2.wall_time:.1f} s, λ {lam[0]:.2f} → {lam[-1]:.2f} (max {max(lam):.2f}). "
        f"{tcfg.t2i.samples_per_prompt} images per prompt, {tcfg.eval.sampler_steps} DDIM "
        f"steps, guidance {tcfg.t2i.guidance}.",
        "",
        "| | concept rate | paraphrase concept rate | retain accuracy | FID |",
        "|---|---|---|---|---|",
    ]
    rows = [("before", before)] + [(f"after {name}", r.after) for name, _, r in runs]
    for name, r in rows:
        para = "n/a" if r.paraphrase_concept_rate is None else f"{r.paraphrase_concept_rate:.3f}"
        lines.append(
            f"| {name} | {r.concept_rate:.3f} | {para} | {r.retain_accuracy:.3f} | {r.fid:.2f} |"
        )
    lines += [
        "",
        "| prompt | before | after ESD | after constrained + dual λ |",
        "|---|---|---|---|",
    ]
    for k, (what, prompt) in enumerate(shown):
        cells = []
        for tag, side, r in (
            ("before", "before", res),
            ("after", "after", res),
            ("dual", "after", res2),
        ):
            name = f"t2i_{tag}_{k}.png"
            shutil.copyfile(
                _grid(Path(r.model_dir).parent, side, before.prompts, prompt), out / name
            )
            cells.append(f"![{tag}]({name})")
        lines.append(f"| {what}: “{prompt}” | {' | '.join(cells)} |")
    shutil.copyfile(Path(res2.model_dir).parent / "lambda.png", out / "t2i_dual_lambda.png")
    lines += [
        "",
        "λ of the dual agent per step: ![dual λ](t2i_dual_lambda.png)",
        "",
        "Unlearned pipelines (load in plain diffusers): "
        f"ESD `{res.model_dir}`, constrained `{res2.model_dir}`",
        "",
    ]
    sections.append("\n".join(lines))
    return {"t2i": res.to_dict(), "t2i-constrained-dual": res2.to_dict()}
