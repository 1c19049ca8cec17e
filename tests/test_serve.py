"""The week 4f demo server, tested over real HTTP: `python -m helpers.ops.serve` runs in a
subprocess on a free loopback port, and httpx talks to it (issue #8); its limits under hostile
or heavy requests (issue #16)."""

import io
import json
import select
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from deploy_server import demo_bundle, peak_rss_mb, running_server
from PIL import Image

from helpers.ops import demo, export, serve
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
    manifest = demo.read_manifest(bundle)
    parity = manifest["parity"]
    assert parity["translator"]["identical"] == parity["translator"]["sentences"] > 0
    assert parity["translator"]["logits_max_abs"] < 1e-3 and parity["translator"]["passed"]
    assert parity["generator"]["max_abs"] < 1e-4 and parity["generator"]["passed"]
    assert set(manifest["translator"]["files"]) == set(demo.TRANSLATOR_FILES)
    assert demo.bundle_problem(bundle, "translator") is None
    assert demo.bundle_problem(bundle, "generator") is None
    assert not list(bundle.parent.glob(".deploy-bundle.*")), "staging folder left behind"


def test_health_and_page(server, bundle):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["translator"] and health["generator"]
    assert health["backend"] == "onnx"
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="text"', 'id="translate-button"', 'id="count"', 'id="generate-button"'):
        assert element in page.text
    assert "http" not in page.text.split("<script>")[1]  # no CDN, no external calls
    assert str(bundle.parent) not in page.text and str(bundle.parent) not in json.dumps(health)


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


def _tiles(grid: np.ndarray, size: int, columns: int) -> list[np.ndarray]:
    """Cut a make_grid PNG (2-pixel white padding, scaled up by a whole factor) into its
    ``size`` x ``size`` cells, row by row, at the original resolution."""
    cell = size + 2
    factor = grid.shape[1] // (columns * cell + 2)
    assert grid.shape[1] == factor * (columns * cell + 2), "width is not a grid of that many columns"
    small = grid[::factor, ::factor]
    rows = (small.shape[0] - 2) // cell
    assert small.shape[0] == rows * cell + 2, "height is not a whole number of rows"
    return [small[2 + r * cell: 2 + r * cell + size, 2 + c * cell: 2 + c * cell + size]
            for r in range(rows) for c in range(columns)]


@pytest.mark.parametrize("count", [2, 5, 9])
def test_generate_png_grid_has_count_tiles_of_the_generated_images(server, bundle, count):
    size = demo.read_manifest(bundle)["generator"]["architecture"]["image_size"]
    grid = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": count}, timeout=60))
    grid = grid[..., 0] if grid.ndim == 3 else grid  # grayscale digits: three equal channels
    columns = int(np.ceil(np.sqrt(count)))
    tiles = _tiles(grid, size, columns)
    filled = [t for t in tiles if not (t == 255).all()]
    assert len(filled) == count and len(tiles) - count < columns, (len(filled), len(tiles))
    G = demo.load_generator(bundle)  # the tiles are these images, in order
    with torch.no_grad():
        images = G(torch.randn(count, G.nz, generator=torch.Generator().manual_seed(3)))
    expected = ((images[:, 0].clamp(-1, 1) + 1) / 2 * 255).round().numpy()
    for got, want in zip(filled, expected):
        assert np.abs(got.astype(float) - want).max() <= 2


def test_generate_is_deterministic_per_seed(server):
    four = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": 4}, timeout=60))
    again = _png(httpx.post(f"{server}/generate", json={"seed": 3, "count": 4}, timeout=60))
    other = _png(httpx.post(f"{server}/generate", json={"seed": 4, "count": 4}, timeout=60))
    assert np.array_equal(four, again), "the same seed must give the same images"
    assert not np.array_equal(four, other), "another seed must give other images"
    defaults = httpx.post(f"{server}/generate", json={}, timeout=60)
    assert defaults.headers["x-count"] == "16"


@pytest.mark.parametrize("payload, status, words", [
    ({"text": ""}, 422, "empty"),
    ({"text": "   \n "}, 422, "empty"),
    ({"text": "a" * 501}, 422, "at most 500 characters"),
    ({}, 422, "text: Field required"),
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
    assert health.json()["status"] == "unavailable"
    assert not health.json()["translator"] and not health.json()["generator"]
    assert demo.DEMO_COMMAND in health.json()["fix"]
    assert "translator.pt" in health.json()["problems"]["translator"]
    for path, payload in (("translate", {"text": SENTENCE}), ("generate", {"seed": 0, "count": 2})):
        response = httpx.post(f"{empty_server}/{path}", json=payload)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert demo.DEMO_COMMAND in detail
        assert ("translator.pt" if path == "translate" else "generator.onnx") in detail
        assert str(folder) not in detail and str(folder.parent) not in detail

    # the models appear while the server runs: it picks them up without a restart
    shutil.copytree(bundle, folder, dirs_exist_ok=True)
    assert httpx.get(f"{empty_server}/health").json()["status"] == "ok"
    response = httpx.post(f"{empty_server}/translate", json={"text": SENTENCE}, timeout=60)
    assert response.status_code == 200 and response.json()["translation"].strip()


# --------------------------------------------------------------------------- hostile or heavy requests (issue #16)
def _longest_text(tok, max_len: int) -> str:
    """The longest text the server accepts: at most 500 characters and max_len - 1 subwords."""
    n = serve.MAX_TEXT_CHARS
    while len(tok.encode("7" * n)) + 1 > max_len:
        n -= 1
    return "7" * n


def test_load_parallel_maximal_requests_and_health(server, bundle):
    """Rounds of parallel maximal-length /translate requests while /health is polled: health
    answers within 1 s throughout, the requests over the cap get 503 with Retry-After, the rest
    translate, the server survives and its memory stays bounded."""
    model, tok = demo.load_translator(bundle)
    text = _longest_text(tok, model.tgt_embed.max_len)
    assert httpx.post(f"{server}/translate", json={"text": text}, timeout=60).status_code == 200
    rss_before = peak_rss_mb(server.pid)
    clients, rounds, statuses, retry_after, health_s = 12, 3, [], set(), []
    stop = threading.Event()

    def poll_health():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert client.get(f"{server}/health").json()["status"] == "ok"
                health_s.append(time.perf_counter() - t0)
                time.sleep(0.05)

    def one(barrier):
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            r = client.post(f"{server}/translate", json={"text": text})
            statuses.append(r.status_code)
            if r.status_code == 503:
                retry_after.add(r.headers.get("retry-after"))

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    start = time.perf_counter()
    for _ in range(rounds):
        barrier = threading.Barrier(clients)
        threads = [threading.Thread(target=one, args=(barrier,), daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    stop.set()
    poller.join(timeout=10)
    wall = time.perf_counter() - start
    rss_after = peak_rss_mb(server.pid)
    print(f"{rounds} rounds x {clients} parallel {len(text)}-character requests in {wall:.1f} s: "
          f"{statuses.count(200)} translated, {statuses.count(503)} got 503; /health answered "
          f"{len(health_s)} times, slowest {max(health_s) * 1000:.0f} ms; server peak RSS "
          f"{rss_before:.0f} MB before, {rss_after:.0f} MB after")
    assert len(statuses) == clients * rounds and set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= rounds and statuses.count(503) >= 1
    assert retry_after == {str(serve.RETRY_AFTER_S)}
    assert health_s and max(health_s) < 1.0
    assert rss_after - rss_before < 200, "memory grew under load"
    assert httpx.post(f"{server}/translate", json={"text": SENTENCE}, timeout=60).status_code == 200


def _raw_request(url: str, head: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode())
    return sock


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split()[1])


def test_a_50_mb_body_is_refused_before_it_is_read(server):
    before = peak_rss_mb(server.pid)
    # declared size: refused on the headers alone, before one byte of the body is sent
    sock = _raw_request(server, "POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n")
    with sock:
        assert _read_status(sock) == 413
    # chunked, no size declared: the server stops reading after the limit and answers while the
    # upload goes on (what was sent after that sits in the kernel's socket buffers, unread)
    sock = _raw_request(server, "POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk, sent, status = b"x" * 4096, 0, None
    with sock:
        try:
            while sent < 50 * 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break
            status = _read_status(sock)
        except (BrokenPipeError, ConnectionResetError):
            pass
    after = peak_rss_mb(server.pid)
    print(f"chunked upload: the server answered {status} after {sent / 1024:.0f} kB of 50 MB; "
          f"peak RSS {before:.0f} -> {after:.0f} MB")
    assert status == 413 and sent < 50 * 2**20, "the server waited for the whole body"
    assert after - before < 20, "the body went into the server's memory"
    assert httpx.get(f"{server}/health").status_code == 200


def test_other_hosts_are_refused_on_loopback(server):
    assert httpx.get(f"{server}/health", headers={"Host": "attacker.example"}).status_code == 400
    assert httpx.get(f"{server}/health", headers={"Host": "localhost:8000"}).status_code == 200


def test_time_budget_stops_a_translation(bundle):
    from fastapi.testclient import TestClient

    client = TestClient(serve.create_app(bundle, time_budget_s=0.0, allowed_hosts=None))
    response = client.post("/translate", json={"text": SENTENCE})
    assert response.status_code == 504 and "time budget" in response.json()["detail"]


def test_the_page_escapes_what_it_shows(tmp_path):
    from fastapi.testclient import TestClient

    folder = tmp_path / "<img src=x onerror=alert(1)>"
    folder.mkdir()
    page = TestClient(serve.create_app(folder, allowed_hosts=None)).get("/").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert str(tmp_path) not in page


def _copy(bundle, where):
    shutil.copytree(bundle, where)
    return where


def _rewrite_manifest(folder, change):
    manifest = demo.read_manifest(folder)
    change(manifest)
    (folder / demo.BUNDLE_MANIFEST).write_text(json.dumps(manifest))


def test_a_broken_model_is_reported_once_and_does_not_block_the_other(bundle, tmp_path):
    """A translator graph that cannot be loaded (its hash recorded as if it had passed):
    503 without paths or inner exception text, remembered (one load attempt), and the
    generator still works. Then the manifest says its parity failed: still never served."""
    folder = _copy(bundle, tmp_path / "deploy")
    (folder / "translator_decoder.onnx").write_bytes(b"not an onnx graph")
    _rewrite_manifest(folder, lambda m: m["translator"]["files"].update(
        {"translator_decoder.onnx": demo._sha256(folder / "translator_decoder.onnx")}))
    with running_server(folder) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "unavailable" and not health["translator"] and health["generator"]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            response = httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert "cannot be loaded" in detail and demo.DEMO_COMMAND in detail
            assert str(tmp_path) not in detail and "Protobuf" not in detail  # no inner exception
        assert httpx.post(f"{url}/generate", json={"count": 2}, timeout=60).status_code == 200
        assert url.log.read_text().count("loading the translator") == 1, "load retried"
        assert "InvalidProtobuf" in url.log.read_text()  # the details are in the operator's log
        assert str(tmp_path) not in json.dumps(httpx.get(f"{url}/health").json())

        _rewrite_manifest(folder, lambda m: m["parity"]["translator"].update(passed=False))
        response = httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60)
        assert response.status_code == 503
        assert "failed its ONNX-vs-PyTorch parity check" in response.json()["detail"]
        assert httpx.post(f"{url}/generate", json={"count": 2}, timeout=60).status_code == 200


def test_a_failed_parity_check_is_never_served_and_a_rebuilt_bundle_is(bundle, tmp_path):
    """Served: a bundle; then a rebuild whose parity fails is refused by publish_bundle (the
    server keeps the old one); then a good rebuild is published and served without a restart."""
    folder = _copy(bundle, tmp_path / "deploy")
    model, tok = demo.load_translator(bundle)
    settings = {**demo.read_manifest(bundle)["translator"]["architecture"]}
    source = demo.read_manifest(bundle)["translator"]["source"]
    with torch.no_grad():  # another model: the output projection scrambled
        for p in model.decoder[-1].ffn.parameters():
            p.mul_(-3.0)
    new = translate(model, tok, [SENTENCE], device=torch.device("cpu"), beam_size=1)[0]
    with running_server(folder) as url:
        old = httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60).json()["translation"]
        assert old != new

        stage = demo.staging_dir(folder)
        demo.save_translator_bundle(model, tok, settings, stage, source="rebuilt")
        shutil.copy(folder / "generator.pt", stage)
        shutil.copy(folder / "generator.onnx", stage)
        manifest = demo.read_manifest(folder)
        demo._update_manifest(stage, generator=manifest["generator"])
        demo.record_parity(stage, generator_max_abs=0.0)
        failed = {"memory_max_abs": 0.0, "logits_max_abs": 0.5, "sentences": 5, "identical": 4,
                  "mismatches": []}
        demo.record_parity(stage, translator=failed)
        with pytest.raises(export.ExportError, match="failed its ONNX-vs-PyTorch parity check"):
            demo.publish_bundle(stage, folder)
        assert demo.read_manifest(folder)["translator"]["source"] == source
        assert httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60).json()["translation"] == old

        runner = export.OnnxTranslator(stage / "translator_encoder.onnx", stage / "translator_decoder.onnx",
                                       pad_id=model.pad_id, max_len=model.tgt_embed.max_len)
        demo.record_parity(stage, translator=export.translator_parity(model, runner, tok, [SENTENCE]).to_dict())
        demo.publish_bundle(stage, folder)
        assert not stage.exists() and demo.read_manifest(folder)["translator"]["source"] == "rebuilt"
        response = httpx.post(f"{url}/translate", json={"text": SENTENCE}, timeout=60)
        assert response.status_code == 200 and response.json()["translation"] == new
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_a_translation_is_at_most_input_length_plus_50_tokens():
    """§6.1's cap, as the server applies it: a model that never says </s> stops there."""
    class Chatty(export.StepTranslator):  # always predicts token 7, never EOS
        pad_id, max_len = 0, 256

        def encode(self, src):
            cross = np.zeros((1, 2, src.shape[0], 1, src.shape[1], 4), dtype=np.float32)
            return None, cross

        def step(self, token, past, cross, src_mask):
            logits = np.zeros((len(token), 10), dtype=np.float32)
            logits[:, 7] = 1.0
            return logits, np.zeros(past.shape[:4] + (past.shape[4] + 1, 4), np.float32)

    class Words:
        def encode(self, text):
            return [5] * len(text.split())

        def decode(self, ids):
            return " ".join(map(str, ids))

    class Fixed:
        def get(self, name):
            return Chatty(), Words()

    out = serve.translate_text(Fixed(), "one two three four")
    assert len(out.split()) == 4 + 1 + serve.MAX_EXTRA_TOKENS  # 4 words + </s> in the input
