"""Train a small transformer to sort, then look inside it.

    python examples/train_and_look_inside.py [OUT_DIR]

Trains 2 seeds as one program until held-out accuracy reaches 0.99 (each run stops on
its own), then on one run: attention patterns, a logit lens, direct logit attribution
per head, and activation patching over every (layer, position), each against its
baseline. Writes the model as safetensors and the attention figure to OUT_DIR (default
results/examples). Under a minute on a laptop CPU.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toymodels import plotting
from toymodels.attribution import direct_logit_attribution, logit_lens
from toymodels.hooks import ablate, run_with_cache, run_with_interventions
from toymodels.interop import load_safetensors, save_safetensors
from toymodels.model import TransformerConfig
from toymodels.patching import patch_sweep
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/examples")
out.mkdir(parents=True, exist_ok=True)
plotting.use_file_backend()

# 1. Train: sort 4 digits out of 6 symbols; inputs "d d d d SEP", the sorted digits follow.
task = make_task("sort", length=4, n_symbols=6)
cfg = TransformerConfig(n_layers=2, d_model=64, n_heads=2, vocab_size=task.vocab.size, max_seq_len=task.seq_len)
train = TrainConfig(steps=1500, batch_size=64, lr=3e-3, n_evals=10, stop_when="sort.acc>=0.99", stop_every=50)
trainer = Trainer(cfg, train, {"sort": task})
res = trainer.train(trainer.runs(seeds=[0, 1]), progress=False)
acc = res.history["sort"]["acc"][:, -1]
print(f"held-out accuracy per seed {[round(float(a), 3) for a in acc]}, stopped at steps {res.stop_step.tolist()}")
model = trainer.model(res.state, run=0)

# 2. The model as a file anyone can read (safetensors, config in its metadata).
path = save_safetensors(model, out / "sort.safetensors")
same = load_safetensors(path)
batch = task.sample(jax.random.key(7), 128, split="eval")
assert np.array_equal(np.asarray(model(batch.inputs)), np.asarray(same(batch.inputs)))

# 3. Where does each head look? Cache every attention pattern; draw those of one example.
logits, cache = run_with_cache(model, batch.inputs, ["blocks.*.attn.pattern"])
words = task.vocab.decode(batch.inputs[0])
for layer in range(cfg.n_layers):
    fig = plotting.attention_patterns(np.asarray(cache[f"blocks.{layer}.attn.pattern"][0]), tokens=words,
                                      title=f"block {layer}")
    plotting.save(fig, out / ("attention" if layer == cfg.n_layers - 1 else f"attention_{layer}"), pdf=False)

# 4. Which layer writes the answer? Logit lens: accuracy read off the residual after each block.
answer = np.asarray(batch.mask) > 0
lens, labels = logit_lens(model, batch.inputs)
for label, lg in zip(labels, np.asarray(lens)):
    lens_acc = (lg.argmax(-1) == np.asarray(batch.targets))[answer].mean()
    print(f"logit lens at {label:>22}: accuracy {lens_acc:.3f}")

# 5. Which head pushes the right digit? DLA of logit(correct) - logit(runner-up), at the first answer.
first = int(np.flatnonzero(answer[0])[0])
correct = np.asarray(batch.targets[:, first])
others = logits[:, first].at[jnp.arange(len(correct)), correct].set(-jnp.inf)
runner_up = np.asarray(others.argmax(-1))
dla, labels = direct_logit_attribution(model, batch.inputs, correct, runner_up, per="head", pos=first)
for label, v in sorted(zip(labels, np.asarray(dla).mean(1)), key=lambda lv: -abs(lv[1]))[:4]:
    print(f"DLA {label:>26}: {v:+.2f}")

# 6. Against a baseline: ablating the top head's layer, and patching a clean run into a corrupted one.
top_head = max((v, label) for label, v in zip(labels, np.asarray(dla).mean(1)) if ".attn.result" in label)[1]
top_layer = int(top_head.split(".")[1])
ablated = run_with_interventions(model, batch.inputs, {f"blocks.{top_layer}.attn.out": ablate()})
abl_acc = (np.asarray(ablated).argmax(-1) == np.asarray(batch.targets))[answer].mean()
print(f"accuracy {float((np.asarray(logits).argmax(-1) == np.asarray(batch.targets))[answer].mean()):.3f}, "
      f"with block {top_layer}'s attention ablated {abl_acc:.3f}")
target = int(batch.targets[0, first])
other = int(np.flatnonzero(np.asarray(batch.targets[:, first]) != target)[0])   # a different first answer
clean, corrupted = batch.inputs[:1], batch.inputs[other:other + 1]
metric = lambda lg: lg[0, first, target] - lg[0, first].mean()    # noqa: E731 -- logit of the clean answer
grid_LT, clean_m, corrupt_m = patch_sweep(model, clean, corrupted, metric)
print(f"patching resid_pre: clean {float(clean_m):.2f}, corrupted {float(corrupt_m):.2f}, "
      f"best single (layer, position) restores {float(np.max(grid_LT)):.2f}")
