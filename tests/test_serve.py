"""The week 4f demo server, tested over real HTTP: `python -m helpers.ops.serve` runs in a
subprocess on a free loopback port, and httpx talks to it (issue #8)."""

import io
import shutil

import httpx
import numpy as np
import pytest
import torch
from deploy_server import demo_bundle, running_server
from PIL import Image

from helpers.ops import demo
from helpers.translation import translate

SENTENCE = "The small dog sees the red car."


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return demo_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def server(bundle):
    with running_server(bundle) as url:
        yield url


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty") / "deploy"
    empty.mkdir()
    with running_server(empty) as url:
        yield url, empty


def test_bundle_parity_recorded(bundle):
    parity = demo.read_manifest(bundle)["parity"]
    assert parity["translator"]["identical"] == parity["translator"]["sentences"] > 0
    assert parity["translator"]["logits_max_abs"] < 1e-3
    assert parity["generator_max_abs"] < 1e-4


def test_health_and_page(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["translator"] and health["generator"]
    assert health["backend"] == "onnx"
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="text"', 'id="translate-button"', 'id="count"', 'id="generate-button"'):
        assert element in page.text
    assert "http" not in page.text.split("<script>")[1]  # no CDN, no external calls


def test_translate_matches_pytorch_greedy(server, bundle):
    response = httpx.post(f"{server}/translate", json={"text": SENTENCE}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    model, tok = demo.load_translator(bundle)
    expected = translate(model, tok, [SENTENCE], device=torch.device("cpu"), beam_size=1)[0]
    assert body["translation"] == expected
    assert body["translation"].strip()
    assert body["backend"] == "onnx"


def test_torch_backend_gives_the_same_translation(server, bundle):
    onnx_text = httpx.post(f"{server}/translate", json={"text": SENTENCE}, timeout=60).json()
    with running_server(bundle, "--backend", "torch") as url:
        torch_text = httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60).json()
    assert torch_text["backend"] == "torch"
    assert torch_text["translation"] == onnx_text["translation"]


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_generate_png_grid(server):
    four = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": 4}, timeout=60))
    again = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": 4}, timeout=60))
    other = _png(httpx.post(f"{server}/generate", json={"seed": 4, "count": 4}, timeout=60))
    nine = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": 9}, timeout=60))
    assert np.array_equal(four, again), "the same seed must give the same images"
    assert not np.array_equal(four, other), "another seed must give other images"
    assert four.shape[0] == four.shape[1] and nine.shape[0] == nine.shape[1]  # 2x2 and 3x3 grids
    assert four.std() > 0  # not a blank image
    defaults = httpx.post(f"{server}/generate", json={}, timeout=60)
    assert defaults.headers["x-count"] == "16"


@pytest.mark.parametrize("payload, status, words", [
    ({"text": ""}, 422, "empty"),
    ({"text": "   \n "}, 422, "empty"),
    ({"text": "a" * 501}, 413, "limit is 500"),
    ({}, 422, "text"),
    ({"text": 5}, 422, "string"),
])
def test_translate_rejects_bad_input(server, payload, status, words):
    response = httpx.post(f"{server}/translate", json=payload)
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"])


def test_translate_rejects_too_many_tokens(server, bundle):
    model, tok = demo.load_translator(bundle)
    text = "7" * 500  # within the character limit, but one unknown subword per character
    assert len(tok.encode(text)) + 1 > model.tgt_embed.max_len
    response = httpx.post(f"{server}/translate", json={"text": text}, timeout=60)
    assert response.status_code == 413, response.text
    assert "subword tokens" in response.json()["detail"]


@pytest.mark.parametrize("payload, words", [
    ({"seed": 0, "count": 0}, "1 to 64"),
    ({"seed": 0, "count": 65}, "1 to 64"),
    ({"seed": -1, "count": 4}, "seed=-1"),
    ({"seed": 0, "count": "many"}, "integer"),
])
def test_generate_rejects_bad_input(server, payload, words):
    response = httpx.post(f"{server}/generate", json=payload)
    assert response.status_code == 422, response.text
    assert words in str(response.json()["detail"])


def test_missing_models_answer_503_with_the_fix(empty_server, bundle):
    empty_server, folder = empty_server
    health = httpx.get(f"{empty_server}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "models missing"
    assert demo.DEMO_COMMAND in health.json()["fix"]
    for path, payload in (("translate", {"text": SENTENCE}), ("generate", {"seed": 0, "count": 2})):
        response = httpx.post(f"{empty_server}/{path}", json=payload)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert demo.DEMO_COMMAND in detail
        assert ("translator.pt" if path == "translate" else "generator.onnx") in detail

    # the models appear while the server runs: it picks them up without a restart
    shutil.copytree(bundle, folder, dirs_exist_ok=True)
    assert httpx.get(f"{empty_server}/health").json()["status"] == "ok"
    response = httpx.post(f"{empty_server}/translate", json={"text": SENTENCE}, timeout=60)
    assert response.status_code == 200 and response.json()["translation"].strip()
