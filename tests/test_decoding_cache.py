"""The key/value cache on a trained model (issue #16): greedy and beam-4 decoding of the smoke
test set give the same token ids with and without the cache (helpers.transformer)."""

import pytest
import torch
from deploy_server import demo_bundle

from helpers.course.data import load_dataset
from helpers.ops import demo
from helpers.ops.export import source_batch
from helpers.runtime.config import profile_config
from helpers.transformer import beam_search, greedy_decode
from helpers.translation import BOS, EOS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo bundle's translator (trained on the smoke stand-in, shared with test_serve.py)
    and the smoke profile's test set (200 sentences)."""
    model, tok = demo.load_translator(demo_bundle(tmp_path_factory))
    cfg = profile_config("translation", "smoke")
    test = load_dataset("multi30k", profile="smoke", n_train=cfg.dataset_size).data["test"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and fair to a busy machine
    yield model, tok, [s for s, _ in test]
    torch.set_num_threads(threads)


def _batches(tok, sentences, size=50):
    for start in range(0, len(sentences), size):
        yield source_batch(tok, sentences[start:start + size], 256)


def test_greedy_with_and_without_the_cache_is_token_identical(trained):
    model, tok, sentences = trained
    assert len(sentences) >= 200
    lengths = []
    for src in _batches(tok, sentences):
        cached = greedy_decode(model, src, BOS, EOS, use_cache=True)
        assert torch.equal(cached, greedy_decode(model, src, BOS, EOS, use_cache=False))
        lengths += [int((row != 0).sum()) for row in cached]
    assert min(lengths) >= 2 and max(lengths) > min(lengths)  # real translations, not one token


def test_beam_4_with_and_without_the_cache_is_token_identical(trained):
    model, tok, sentences = trained
    for src in _batches(tok, sentences):
        cached = beam_search(model, src, BOS, EOS, beam_size=4, alpha=0.6, use_cache=True)
        assert cached == beam_search(model, src, BOS, EOS, beam_size=4, alpha=0.6, use_cache=False)
