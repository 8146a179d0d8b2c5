"""Weights downloads against a real HTTP server on 127.0.0.1 (http.server in a thread, random port): a good
file, a file changed after it was locked, a truncated transfer, a 404, a server that never answers."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time

import pytest

from segcore import hub, registry


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (mode, bytes); set per server
    release: threading.Event

    def do_GET(self):  # noqa: N802 (http.server's name)
        mode, body = self.routes.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "silent":  # accepts the connection and never answers
            self.release.wait(30)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if mode == "ok" else body[: len(body) // 2])  # "truncate": half, then close
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *a):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLIP_SUITE_DOWNLOAD", raising=False)
    handler = type("H", (_Handler,), {"routes": {}, "release": threading.Event()})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base, handler.routes
    handler.release.set()
    srv.shutdown()
    srv.server_close()


def _folder_files(tmp_path):
    """Everything in the flip cache folder (temp files included)."""
    d = tmp_path / "cache" / "flip"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


PAYLOAD = b"onnx-bytes-" * 5000  # 55 kB: several reads


def test_good_file_is_fetched_locked_and_labelled_url(server, tmp_path, capsys):
    base, routes = server
    routes["/w/x.onnx"] = ("ok", PAYLOAD)
    wf = hub.WeightFile("x.onnx", "flip", "authors", None, f"{base}/w/x.onnx")
    with pytest.raises(hub.WeightsError, match="make weights MODEL=m"):
        hub.resolve("m", [wf])  # no opt-in: nothing fetched, the message says how
    assert _folder_files(tmp_path) == []
    (p,) = hub.resolve("m", [wf], download=True, timeout=5)
    assert p == tmp_path / "cache" / "flip" / "x.onnx" and p.read_bytes() == PAYLOAD
    assert _folder_files(tmp_path) == ["x.onnx"]  # no temp file left
    assert "x.onnx" in capsys.readouterr().err  # the progress bar names the file
    entry = json.loads(hub.lock_path().read_text())["files"]["flip/x.onnx"]
    assert entry["sha256"] == hashlib.sha256(PAYLOAD).hexdigest() and entry["size"] == len(PAYLOAD)
    assert entry["url"] == f"{base}/w/x.onnx" and entry["date"].startswith("20")
    # never authors:/official: without a published digest
    assert hub.weights_id([p], [wf]) == f"url:x.onnx@sha256:{entry['sha256'][:12]}"
    routes.clear()  # later uses are local and checked against the lock
    assert hub.resolve("m", [wf]) == [p]
    # a published digest is checked: the same bytes against a wrong one are discarded, never given the name
    routes["/w/y.onnx"] = ("ok", PAYLOAD)
    wrong = hub.WeightFile("y.onnx", "flip", "authors", "0" * 64, f"{base}/w/y.onnx")
    with pytest.raises(hub.WeightsError, match="expected 0000"):
        hub.resolve("m", [wrong], download=True, timeout=5, progress=False)
    assert _folder_files(tmp_path) == ["x.onnx"]
    right = hub.WeightFile("y.onnx", "flip", "authors", hashlib.sha256(PAYLOAD).hexdigest(), f"{base}/w/y.onnx")
    (q,) = hub.resolve("m", [right], download=True, timeout=5, progress=False)
    assert hub.weights_id([q], [right]).startswith("authors:y.onnx@sha256:")
    assert "flip/y.onnx" not in hub.read_lock()  # published files are not locked: their digest is the check


def test_file_changed_after_it_was_locked_is_refused_with_how_to_accept(server, tmp_path):
    from benchmark.weights import main

    base, routes = server
    routes["/x.onnx"] = ("ok", PAYLOAD)
    wf = hub.WeightFile("x.onnx", "flip", "authors", None, f"{base}/x.onnx")
    (p,) = hub.resolve("m", [wf], download=True, timeout=5, progress=False)
    locked = hub.read_lock()["flip/x.onnx"]["sha256"]
    # the server now serves other bytes: a fresh download is refused and never takes the name
    routes["/x.onnx"] = ("ok", PAYLOAD + b"changed")
    p.unlink()
    with pytest.raises(hub.WeightsError, match=r"--accept flip/x.onnx") as e:
        hub.resolve("m", [wf], download=True, timeout=5, progress=False)
    assert "differs from the file locked" in str(e.value) and _folder_files(tmp_path) == []
    # a file put there by hand after the lock: refused on use, with the way to accept it
    p.write_bytes(b"hand-placed other bytes")
    with pytest.raises(hub.WeightsError, match=r"changed since it was locked .*--accept flip/x.onnx"):
        hub.resolve("m", [wf])
    assert hub.read_lock()["flip/x.onnx"]["sha256"] == locked  # refusing never rewrites the lock
    assert main(["--accept", "flip/x.onnx"]) == 0
    assert hub.resolve("m", [wf]) == [p]
    assert hub.read_lock()["flip/x.onnx"]["sha256"] == hashlib.sha256(b"hand-placed other bytes").hexdigest()


def test_truncated_transfer_is_an_error_and_leaves_nothing(server, tmp_path):
    base, routes = server
    routes["/t.onnx"] = ("truncate", PAYLOAD)
    for sha in (None, hashlib.sha256(PAYLOAD).hexdigest()):
        wf = hub.WeightFile("t.onnx", "flip", "authors", sha, f"{base}/t.onnx")
        with pytest.raises(hub.WeightsError, match=r"download of .*/t.onnx failed \((IncompleteRead|OSError)"):
            hub.resolve("m", [wf], download=True, timeout=5, progress=False)
        assert _folder_files(tmp_path) == [] and "flip/t.onnx" not in hub.read_lock()


def test_404_is_a_clear_error(server, tmp_path):
    base, _ = server
    wf = hub.WeightFile("n.onnx", "flip", "authors", None, f"{base}/missing/n.onnx")
    with pytest.raises(hub.WeightsError, match=r"m: download of http://127.0.0.1:\d+/missing/n.onnx failed \(HTTPError: HTTP Error 404"):
        hub.resolve("m", [wf], download=True, timeout=5, progress=False)
    assert _folder_files(tmp_path) == [] and hub.read_lock() == {}


def test_server_that_never_answers_is_a_timeout_not_a_hang(server, tmp_path, monkeypatch):
    base, routes = server
    routes["/s.onnx"] = ("silent", b"")
    wf = hub.WeightFile("s.onnx", "flip", "authors", None, f"{base}/s.onnx")
    t0 = time.monotonic()
    with pytest.raises(hub.WeightsError, match=r"download of .*/s.onnx failed \((TimeoutError|timeout|URLError).*timed out"):
        hub.resolve("m", [wf], download=True, timeout=0.5, progress=False)
    assert time.monotonic() - t0 < 10
    monkeypatch.setenv("FLIP_SUITE_TIMEOUT", "0.3")  # the same through the environment (make weights, make bench)
    t0 = time.monotonic()
    with pytest.raises(hub.WeightsError, match="timed out"):
        hub.resolve("m", [wf], download=True, progress=False)
    assert time.monotonic() - t0 < 10 and _folder_files(tmp_path) == []


def test_weights_cli_fetches_a_registered_model_and_lists_its_status(server, tmp_path, capsys):
    from benchmark.weights import main

    base, routes = server
    routes["/enc.onnx"], routes["/dec.onnx"] = ("ok", b"encoder" * 100), ("ok", b"decoder" * 100)
    files = (hub.WeightFile("enc-test.onnx", "flip", "authors", None, f"{base}/enc.onnx"),
             hub.WeightFile("dec-test.onnx", "flip", "authors", None, f"{base}/dec.onnx"))
    entry = registry.register(registry.ModelEntry("hubtest", "authors", lambda *a, **k: None, weights=files,
                                                  description="loopback test model"))
    try:
        assert registry.get("hubtest").tag == "authors"
        assert main(["--list", "hubtest"]) == 0
        assert capsys.readouterr().out.count(" missing ") == 2
        assert main(["hubtest", "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "hubtest.authors: ok  url:enc-test.onnx+dec-test.onnx@sha256:" in out and "1 ok, 0 failed" in out
        assert entry.local_files() == [tmp_path / "cache" / "flip" / n for n in ("enc-test.onnx", "dec-test.onnx")]
        assert main(["--list", "hubtest"]) == 0
        assert capsys.readouterr().out.count(" ok ") == 2  # "locked <date> ok"
        routes.clear()
        (tmp_path / "cache" / "flip" / "dec-test.onnx").write_bytes(b"other")
        assert main(["hubtest", "--no-progress"]) == 1
        assert "--accept flip/dec-test.onnx" in capsys.readouterr().err
    finally:
        registry.unregister(entry.name)


def test_lock_file_survives_concurrent_writers(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path))
    keys = [f"fam/f{i}.bin" for i in range(12)]
    threads = [threading.Thread(target=hub._update_lock, args=(k, {"sha256": k, "url": "u"})) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(hub.read_lock()) == sorted(keys)


def test_download_opt_in_picks_the_published_weights_and_messages_name_make_weights(tmp_path, monkeypatch):
    import flip  # noqa: F401  (registers FLIP's entries)

    monkeypatch.setenv("FLIP_SUITE_CACHE", str(tmp_path))
    # without the opt-in the packaged project checkpoint serves flip-tiny; with it, the authors' files are fetched
    assert registry.get("flip-tiny").tag == "project"
    assert registry.get("flip-tiny", download=True).tag == "authors"
    assert registry.get("flip-large", download=True).tag == "authors"
    with pytest.raises(hub.WeightsError, match=r"make weights MODEL=flip-large.*manuel-traub.de/onnx/flip-encoder-large.onnx"):
        flip.pretrained("flip-large")


def test_zipped_download_is_extracted_checked_and_locked(server, tmp_path):
    import io
    import zipfile

    base, routes = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights/model.pt", PAYLOAD)
    routes["/model.pt.zip"] = ("ok", buf.getvalue())
    wf = hub.WeightFile("model.pt", "flip", "official", None, f"{base}/model.pt.zip", f"{base}/model.pt.zip")
    (p,) = hub.resolve("m", [wf], download=True, timeout=5, progress=False)
    assert p.read_bytes() == PAYLOAD and _folder_files(tmp_path) == ["model.pt"]
    assert hub.read_lock()["flip/model.pt"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()  # the extracted file
    routes["/bad.pt.zip"] = ("ok", b"not a zip")
    bad = hub.WeightFile("bad.pt", "flip", "official", None, f"{base}/bad.pt.zip", f"{base}/bad.pt.zip")
    with pytest.raises(hub.WeightsError, match="not a valid zip file"):
        hub.resolve("m", [bad], download=True, timeout=5, progress=False)
    assert _folder_files(tmp_path) == ["model.pt"]
