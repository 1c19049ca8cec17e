"""Plots the notebooks share: attention heatmaps (seaborn) with a layer/head picker
(Transformer weeks 2-3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import seaborn as sns
import torch


def attention_heatmap(weights, query_labels: Sequence[str] | None = None,
                      key_labels: Sequence[str] | None = None, *, ax=None, title: str = ""):
    """One attention matrix ``[query_len, key_len]`` as a seaborn heatmap; rows are queries,
    each row sums to 1 (week 2)."""
    w = torch.as_tensor(weights).detach().float().cpu()
    if w.dim() != 2:
        raise ValueError(f"expected a [query, key] matrix, got shape {tuple(w.shape)}; "
                         f"pick one batch item and one head first, e.g. weights[0, head]")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * w.size(1) + 2.5, 0.45 * w.size(0) + 1.5))
    sns.heatmap(w.numpy(), ax=ax, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-6),
                xticklabels=list(key_labels) if key_labels is not None else False,
                yticklabels=list(query_labels) if query_labels is not None else False,
                cbar_kws={"label": "attention weight"})
    if key_labels is not None:
        ax.set_xticklabels(ax.get_xticklabels(), rotation=60, ha="right", fontsize=8)
    if query_labels is not None:
        ax.set_yticklabels(ax.get_yticklabels(), rotation=0, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def attention_explorer(weights: Mapping[str, torch.Tensor], query_labels=None, key_labels=None):
    """Pick a layer and a head with ``ipywidgets`` and see its attention (weeks 2-3).

    ``weights`` maps a layer name to ``[heads, query_len, key_len]``. Without a widget front
    end (CI, plain Python) the first layer and head are drawn once.
    """
    names = list(weights)
    n_heads = int(weights[names[0]].size(0))

    def show(layer=names[0], head=0):
        attention_heatmap(weights[layer][head], query_labels, key_labels,
                          title=f"{layer}, head {head}")
        plt.show()

    return widgets.interact(show, layer=widgets.Dropdown(options=names, value=names[0]),
                            head=widgets.IntSlider(value=0, min=0, max=n_heads - 1))
