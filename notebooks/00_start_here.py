# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-accelerator,-colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Start here: how this curriculum works
#
# Two landmark papers, implemented by you, week by week:
# **"Attention Is All You Need"** (Vaswani et al., 2017) and **DCGAN**, "Unsupervised
# Representation Learning with Deep Convolutional GANs" (Radford et al., 2015).
#
# **Do this first**
#
# 1. **Run this notebook** (on Colab: *Runtime → Change runtime type → T4 GPU* first). It
#    checks your environment and shows how every notebook works.
# 2. **Pick a track**: the Transformer (`notebooks/transformer/`) or DCGAN
#    (`notebooks/dcgan/`), each from its week 0. They are independent; do both in either order.
# 3. **Pick a run profile** (section 2): `local` on a laptop, `full` on a GPU, `smoke` for a
#    one-minute check. Without a choice you get `full` with a GPU, `local` without.
# 4. **Use the exercise versions**: four notebooks (Transformer weeks 2–3, DCGAN weeks 3–4) have
#    a copy in `exercises/` with blanks to fill (the badge row at the top of each links it).
#    Do those, then read the solution notebook.
# 5. **Studying in a group?** `docs/SYLLABUS.md` has the week-by-week plan, times and discussion
#    questions.
#
# **Learning goals.** After this notebook you can
# - say what each week of both tracks builds, and where its code ends up;
# - run any notebook on Colab (free GPU) or on your laptop (CPU), and pick a run profile;
# - check that your environment works: versions, GPU, memory, a first timed matrix multiply;
# - find datasets the way every notebook does (your folder first, then a cached download).
#
# **Time:** about 15 minutes (smoke profile: under a minute).
#
# **Videos / readings (from the course plan):**
# - Papers: [Attention Is All You Need](https://arxiv.org/abs/1706.03762) ·
#   [DCGAN](https://arxiv.org/abs/1511.06434)
# - [The StatQuest introduction to PyTorch](https://www.youtube.com/watch?v=FHdlXe1bSe4)
# - [Getting started with Hugging Face in 15 minutes](https://youtu.be/QEaBAZQCtwE) (AssemblyAI)
# - [Learn PyTorch for deep learning in a day](https://www.youtube.com/watch?v=Z_ikDlimN6A) (Daniel Bourke;
#   a full-day course, worked in Google Colab: dip in where you need it)

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/paper-curriculum/attention-dcgan/blob/v0.1.0/notebooks/00_start_here.ipynb) · [Syllabus and study-group plan](https://github.com/paper-curriculum/attention-dcgan/blob/v0.1.0/docs/SYLLABUS.md)

# %% [markdown]
# ## 1. The plan
#
# Both tracks follow the same path: **understand the paper → break down the method → build it
# step by step → train a small version → compare with the paper → optimize and deploy**.
# Each week is one notebook (or a few) in `notebooks/<track>/`.
#
# | Week | Transformer (`notebooks/transformer/`) | DCGAN (`notebooks/dcgan/`) |
# |---|---|---|
# | 0 | Prerequisites: matrices and dot products, softmax, backprop, why RNNs forget, self-attention intuition | Prerequisites: GAN basics (a toy 2-D GAN), CNN layers, PyTorch tensors and training loops, representation learning |
# | 1 | The architecture (paper §1–2): multi-head attention, positional encoding, FFN, residual + LayerNorm, masks; sketch the model | GANs and DCGAN: generator vs discriminator, the minimax loss, the architecture guidelines; set up Colab with a GPU |
# | 2 | Scaled dot-product and multi-head attention from scratch (§3.2), checked against `torch.nn.MultiheadAttention` | Data: MNIST, Fashion-MNIST, CIFAR-10, CelebA or your own folder; resize to 64×64, scale to [-1, 1], test the DataLoader |
# | 3 | The full 6+6 encoder-decoder (§3, §5); a toy task, then translation on Multi30k with BLEU | Generator (`ConvTranspose2d`) and discriminator (`Conv2d`), N(0, 0.02) init, BCE, Adam(2e-4, β₁=0.5) |
# | 4 | Fine-tuning with Hugging Face, custom datasets (summarization, translation), optimization: clipping, LR schedules, checkpoints, mixed precision; BERT/GPT/ViT | Training, sample grids, latent walks, mode-collapse diagnostics; final project with FID and the paper's feature-learning test |
#
# The code you write in the open in one week is kept, tested, in the small package
# [`helpers/`](https://github.com/paper-curriculum/attention-dcgan/tree/v0.1.0/helpers) and imported from the next week on. Every function's docstring says
# which paper section it implements and which week introduced it.

# %% [markdown]
# ## 2. Where to run it
#
# **Colab (free GPU).** Click the badge at the top of any notebook, then *Runtime → Change
# runtime type → T4 GPU*. The first code cell installs `helpers` (the course's pinned release,
# plus the extras that notebook needs) and changes none of Colab's own packages, torch included;
# run again, it installs nothing. Tick **`KEEP_ON_DRIVE`** in that cell before long runs:
# `runs/` (results, checkpoints) and the download cache then live on Google Drive, so after a
# disconnect you run the notebook again and training continues from the last checkpoint, and
# later notebooks (the final project, the deploy notebook) find the models earlier ones trained.
# The same cell works on Kaggle and other hosted Jupyter services.
#
# **Your laptop.** In a clone of the repository: `make setup` (creates `.venv` and installs
# everything; without make: `python -m venv .venv` and `.venv/bin/pip install -e ".[deploy,offline,dev]"`),
# then `make lab` (or `.venv/bin/jupyter lab`). No GPU needed: the `local` profile is sized for a CPU.
#
# **Run profiles.** One environment variable, `CURRICULUM_PROFILE`, sets the size of every run:
#
# | profile | for | what it runs |
# |---|---|---|
# | `smoke` | CI, a quick check | CPU, offline stand-in data, small models, each notebook under a minute |
# | `local` | a CPU laptop | real data, small models, results in minutes |
# | `full` | one GPU (Colab T4 or better) | the papers' model sizes, trained briefly on small data sets |
#
# `full` is not the papers' experiments: for the Transformer it is the paper's base model
# trained on Multi30k (29,000 sentence pairs, not WMT's 4.5 million) for a few thousand steps
# with smaller batches; for DCGAN, 64 × 64 networks built like Figure 1, on far fewer images. Each
# training notebook ends with a "Paper vs. this run" table that shows what differs.
#
# Without the variable you get `full` when a CUDA GPU is present, otherwise `local` (on Colab:
# `import os; os.environ["CURRICULUM_PROFILE"] = "local"` before the notebook's imports). Every
# notebook reads its numbers with `profile_config(...)`; they all live in one file,
# [`helpers/runtime/config.py`](https://github.com/paper-curriculum/attention-dcgan/blob/v0.1.0/helpers/runtime/config.py), so you can see all three sizes side by side.
# To change a number, pass it where the notebook builds its config, e.g.
# `cfg = profile_config("translation", train_steps=3000)`, rather than editing the installed file.
# Each profile keeps its own checkpoints (`runs/<track>/<notebook>/checkpoints/<profile>/`), so
# switching profiles never trips over another profile's run.

# %%
# @title Setup (generated by `tools/nbtools.py sync`, i.e. `make sync`; do not edit by hand) { display-mode: "form" }
KEEP_ON_DRIVE = False  # @param {type:"boolean"}
PROFILE = "auto"  # @param ["auto", "smoke", "local", "full"]
REPO, REF = "paper-curriculum/attention-dcgan", "v0.1.0"  # a fork? in your clone: make sync REPO=owner/name REF=<tag>
import importlib.util, os, subprocess, sys  # noqa: E401, I001
sys.path[:0] = [p for p in ("../tools/setup", "../../tools/setup") if os.path.isdir(p)]  # a clone's own installer
src, ref = os.environ.get("CURRICULUM_REPO", REPO), os.environ.get("CURRICULUM_REF", REF)
src = src if "://" in src else f"https://github.com/{src}"
if not importlib.util.find_spec("curriculum_setup") and subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{src}@{ref}#subdirectory=tools/setup"]).returncode:
    raise RuntimeError(f"Could not install the course's installer from {src} at {ref} (pip's message above). Fix: a fork or a copy? set REPO = 'owner/name' and REF above. Offline or private? Put the course on Google Drive, or run the notebooks on your machine: README, 'If the setup cell fails'.")
import curriculum_setup  # noqa: E402, I001  (tools/setup/curriculum_setup.py: what this cell does, and why)
curriculum_setup.setup(REPO, REF, keep_on_drive=KEEP_ON_DRIVE, profile=PROFILE)

# %%
import time

import matplotlib.pyplot as plt
import torch

from helpers.course import checks
from helpers.runtime import env
from helpers.runtime.config import PROFILES, profile_config

cfg = profile_config("start_here")
env.seed_everything(cfg.seed)
device = env.get_device()
print(cfg)
print("device:", device)

# %% [markdown]
# ## 3. Environment check
#
# What you are running on. On Colab you should see a GPU here; if `gpus` is empty, switch the
# runtime type to GPU.

# %%
report = env.environment_report()
for key, value in report.items():
    print(f"{key:>12}: {value}")

checks.check_true(report["profile"] in PROFILES, "profile is valid",
                  f"unexpected profile {report['profile']!r}")
checks.check_true(cfg.profile == report["profile"], "config follows the active profile",
                  f"config built for {cfg.profile!r} but the active profile is {report['profile']!r}")
if cfg.profile == "smoke":
    checks.check_true(device.type == "cpu", "smoke runs on the CPU",
                      f"smoke profile chose {device}; CI has no GPU")

# %% [markdown]
# ### A first measurement: matrix multiplication
#
# Attention is mostly matrix multiplication, so it is worth knowing how fast your machine does
# it. We multiply two random `n × n` matrices, check the answer against NumPy (float64), and
# report the speed in GFLOP/s (one `n × n` product costs `2·n³` floating-point operations).

# %%
n = cfg.matmul_size
a = torch.randn(n, n, device=device)
b = torch.randn(n, n, device=device)

product = a @ b  # warm-up (and the result we check)
reference = a.cpu().double().numpy() @ b.cpu().double().numpy()
checks.check_close(product.cpu(), torch.from_numpy(reference), atol=1e-3 * n ** 0.5,
                   name=f"{n}x{n} matmul vs NumPy float64")

if device.type == "cuda":
    torch.cuda.synchronize()
start = time.perf_counter()
for _ in range(cfg.matmul_repeats):
    product = a @ b
if device.type == "cuda":
    torch.cuda.synchronize()
seconds = (time.perf_counter() - start) / cfg.matmul_repeats
gflops = 2 * n ** 3 / seconds / 1e9
print(f"{n}x{n} float32 matmul on {device}: {seconds * 1e3:.2f} ms  ->  {gflops:.1f} GFLOP/s")
checks.check_true(gflops > 0.1, "matmul speed is plausible",
                  f"only {gflops:.3f} GFLOP/s; is another program using the CPU?")

# %% [markdown]
# ### Seeds make runs repeatable
#
# Every notebook seeds Python, NumPy and torch with `env.seed_everything`. Same seed, same
# numbers; that is what lets the tests (and your study group) compare runs exactly. In `smoke`
# and `local` it also asks for deterministic kernels; `full` (a GPU) lets cuDNN autotune its
# kernels instead, which is faster but makes reruns agree only to rounding (the profile's
# `deterministic` setting; `env.seed_everything(seed, deterministic=True)` turns it back on).

# %%
print(env.reproducibility_note())
env.seed_everything(123)
first = torch.randn(3)
env.seed_everything(123)
second = torch.randn(3)
checks.check_close(first, second, atol=0.0, name="same seed, same random numbers")
checks.check_true(not torch.equal(first, torch.randn(3)), "the next draw differs",
                  "the generator did not advance")

# %% [markdown]
# ## 4. Data: your folder first, then a cached download
#
# Every dataset in the course is found the same way (`helpers.course.data.load_dataset`):
#
# 1. your data folder, `$CURRICULUM_DATA_DIR` (default `data/` in the repository), in the
#    dataset's **official layout** (e.g. `MNIST/raw/train-images-idx3-ubyte.gz`);
# 2. the download cache (`~/.cache/curriculum`), checked against the SHA-256 recorded at download;
# 3. a fresh download into that cache.
#
# If all three fail (say you are offline), the error lists exactly which files to put where.
# The `smoke` profile never downloads: it uses a small stand-in that ships with an installed
# package (here scikit-learn's handwritten digits).

# %%
from helpers.course.data import DataError, load_dataset

try:
    mnist = load_dataset("mnist")
except DataError as error:  # offline without a local copy: show the message, carry on
    print(error)
    mnist = load_dataset("mnist", profile="smoke")
print(mnist.describe())

images, labels = mnist.data["train"]
checks.check_shape(images, (None, 28, 28), "MNIST-style training images")
checks.check_true(images.dtype == torch.uint8 and len(images) == len(labels),
                  "one uint8 image per label", f"dtype {images.dtype}, {len(images)} images, "
                  f"{len(labels)} labels")
checks.check_true(set(labels.unique().tolist()) == set(range(10)), "all ten classes present",
                  f"classes seen: {sorted(labels.unique().tolist())}")

fig, axes = plt.subplots(2, 8, figsize=(8, 2.3))
for ax, img, lbl in zip(axes.flat, images[:16], labels[:16]):
    ax.imshow(img, cmap="gray")
    ax.set_title(int(lbl), fontsize=9)
    ax.axis("off")
fig.suptitle(f"{mnist.name} ({mnist.origin})")
plt.show()

# %% [markdown]
# ## 5. What's next
#
# - Transformer track: start with `notebooks/transformer/week0_…`.
# - DCGAN track: start with `notebooks/dcgan/week0_…`.
#
# Each notebook opens like this one: goals, time, videos and readings, a Colab badge and a
# setup cell. Cells marked with ✓ lines are checks: if one fails, its message tells you what is
# wrong and usually why. Training notebooks write their final numbers to
# `runs/<track>/<notebook>/metrics.json`, so you can compare runs with your study group.

# %% [markdown]
# **Next notebook:** [Transformer · Week 0: Prerequisites](https://colab.research.google.com/github/paper-curriculum/attention-dcgan/blob/v0.1.0/notebooks/transformer/week0_prerequisites.ipynb) (`notebooks/transformer/week0_prerequisites.ipynb` in your clone) · [DCGAN · Week 0: Prerequisites](https://colab.research.google.com/github/paper-curriculum/attention-dcgan/blob/v0.1.0/notebooks/dcgan/week0_prerequisites.ipynb) (`notebooks/dcgan/week0_prerequisites.ipynb` in your clone)
