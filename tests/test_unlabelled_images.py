"""A folder of images without labels (CelebA's layout, or a learner's own photos) runs through
DCGAN week 4's training and evaluation cells and the final project: the label-dependent
evaluations switch to label-free ones and say so."""

import json
from pathlib import Path

import jupytext
import numpy as np
import torch
from nbclient import NotebookClient

from helpers.course.data.images import (
    ImageFolderDataset,
    dataset_labels,
    digits_standin,
    gan_dataset,
    images_of,
)

ROOT = Path(__file__).resolve().parent.parent

CONFIG_LINE = 'cfg = profile_config("dcgan")'


def make_image_folder(folder, count=96):
    """Digits from scikit-learn's stand-in saved as PNG files in sub-folders, labels dropped."""
    from PIL import Image

    images, _ = digits_standin(size=32)["train"]
    for i, image in enumerate(images[:count]):
        sub = folder / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy().astype(np.uint8), mode="L").save(sub / f"img_{i:03d}.png")
    return folder


def test_image_folder_has_no_labels_and_tensors_do(tmp_path):
    folder = make_image_folder(tmp_path / "faces", count=8)
    ds, description = gan_dataset(str(folder), image_size=32, channels=1)
    assert isinstance(ds, ImageFolderDataset) and "8 images" in description
    assert dataset_labels(ds) is None
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images_of(batch).shape == (4, 1, 32, 32)
    labelled, _ = gan_dataset("mnist", image_size=32, channels=1, profile="smoke")
    assert dataset_labels(labelled) is not None and len(dataset_labels(labelled)) == len(labelled)
    assert images_of(next(iter(torch.utils.data.DataLoader(labelled, batch_size=4)))).shape == (4, 1, 32, 32)


def run_with_folder(notebook, folder, tmp_path, **settings):
    """Execute a notebook with its dcgan config pointed at ``folder``; returns all its output."""
    nb = jupytext.read(str(ROOT / "notebooks" / "dcgan" / f"{notebook}.py"))
    cells = [c for c in nb.cells if c.cell_type == "code" and CONFIG_LINE in c.source]
    assert len(cells) == 1, f"{notebook}: expected one cell with {CONFIG_LINE!r} to point at the folder"
    args = ", ".join(f"{k}={v!r}" for k, v in {"dataset": str(folder), **settings}.items())
    cells[0].source = cells[0].source.replace(CONFIG_LINE, f'cfg = profile_config("dcgan", {args})')
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_dcgan_week4_and_final_project_run_on_an_unlabelled_folder(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two threads crawl when other jobs share the cores
    folder = make_image_folder(tmp_path / "my_photos")
    settings = dict(train_steps=100, sample_every=50, checkpoint_every=50, batch_size=32, eval_samples=96)
    out = run_with_folder("week4_training", folder, tmp_path, **settings)
    assert "labels: none (an image folder)" in out
    assert "This data set has no labels" in out and "8x8 thumbnails" in out
    record = json.loads((tmp_path / "runs" / "dcgan" / "week4_training" / "metrics.json").read_text())
    assert record["extra"]["labels"] is False
    assert "classes_covered" not in record["metrics"] and "thumbnail_frechet" in record["metrics"]
    assert record["metrics"]["train_steps"] == 100
    assert record["metrics"]["thumbnail_frechet"] < record["metrics"]["thumbnail_frechet_untrained"]

    # the label-free paths are what is tested here: one draw of two label counts for the probe
    out = run_with_folder("week5_final_project", folder, tmp_path, **settings, probe_draws=1,
                          probe_labels_per_class=[5, 20], classifier_epochs=2)
    assert "week 4's checkpoint is at step 100 of 100" in out  # the final project loads week 4's run
    assert "has no labels: your discriminator's features are tested on mnist" in out
    record = json.loads((tmp_path / "runs" / "dcgan" / "week5_final_project" / "metrics.json").read_text())
    assert record["metrics"]["fid_kind"] == "thumbnails" and record["extra"]["labels"] is False
    assert record["metrics"]["probe_dataset"] == "mnist"
