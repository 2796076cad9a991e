"""Completion quality of an image-completion model on every held-out image: classifier
accuracy per digit (the shipped MNIST classifier), FID and embedding cosine of the completions
against their ground truth, and the same for the masked input alone; inpaint at 0.25 and
outpaint at 0.5. Writes OUT/quality.json and OUT/<task>.png (masked | completion | truth).

Run: .venv/bin/python benchmarks/i2i_quality.py CONFIG MODEL_DIR OUT [WORKDIR]
"""

import json
import sys
import time

import torch

from unlearn.config import load_config
from unlearn.data import load_splits
from unlearn.families.i2i.pretrain import i2i_model_key
from unlearn.families.store import locate
from unlearn.metrics.fid import frechet_distance
from unlearn.metrics.i2i import complete, save_completion_grid, triples
from unlearn.models import load_model
from unlearn.models.i2i import load_i2i

cfg_path, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
workdir = sys.argv[4] if len(sys.argv) > 4 else "runs"
res = {}
for task, ratio in (("inpaint", 0.25), ("outpaint", 0.5)):
    cfg = load_config(
        cfg_path, [f"workdir={workdir}", f"i2i.task={task}", f"i2i.mask_ratio={ratio}"]
    )
    model = load_i2i(model_dir)
    model.set_mask(task, ratio)
    held = load_splits(cfg.data).heldout
    clf = load_model(locate(cfg, i2i_model_key(cfg))[1])
    t0 = time.perf_counter()
    done = complete(model, cfg, held.images)
    secs = time.perf_counter() - t0
    p, f = clf.predict(done)
    pt, ft = clf.predict(held.images)
    acc = (p.argmax(1) == held.labels).float()
    acc_true = (pt.argmax(1) == held.labels).float()
    per = {str(c): round(float(acc[held.labels == c].mean()), 3) for c in range(10)}
    masked = model.masked(held.images)
    pm, fm = clf.predict(masked)
    res[task] = {
        "mask_ratio": ratio,
        "hidden_fraction": float(model.mask(held.images[:1]).mean()),
        "images": len(held),
        "accuracy": round(float(acc.mean()), 4),
        "accuracy_masked_input": round(float((pm.argmax(1) == held.labels).float().mean()), 4),
        "accuracy_ground_truth": round(float(acc_true.mean()), 4),
        "per_digit_accuracy": per,
        "fid": round(frechet_distance(f, ft), 3),
        "fid_masked_input": round(frechet_distance(fm, ft), 3),
        "cosine": round(float(torch.nn.functional.cosine_similarity(f, ft).mean()), 4),
        "completion_seconds": round(secs, 1),
        "sampler_steps": cfg.eval.sampler_steps,
    }
    sel = torch.cat([torch.nonzero(held.labels == c)[:1, 0] for c in range(10)])  # one per digit
    save_completion_grid(triples(model, held.images[sel], done[sel]), f"{out}/{task}.png")
    print(task, json.dumps(res[task]), flush=True)
json.dump(res, open(f"{out}/quality.json", "w"), indent=2)
