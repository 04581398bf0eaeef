"""Model management over the Ollama API, driven by the official ``ollama`` client
against a real ``llmkit serve``: pull (through a stand-in Hugging Face hub on
loopback, serving the bundled GGUF), list, delete, copy, create (from a blob or
a GGUF on the server's disk, with a system prompt and parameters), blobs; models
in the local catalog served on demand; the API key and ``--no-model-management``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import ollama
import pytest

from llmkit import __version__
from tests.conftest import Server, start_server
from tests.standin_hub import StandinHub

KEY = "sk-models"
AUTH = {"Authorization": f"Bearer {KEY}"}
SHORT = {"num_predict": 2, "temperature": 0}


@pytest.fixture(scope="module")
def hub(bundled_path: str):
    data = Path(bundled_path).read_bytes()
    with StandinHub("hf", {"org/smol-GGUF": {"smol-q4_1.gguf": data, "README.md": b"hi\n"}}) as h:
        yield h


@pytest.fixture(scope="module")
def srv(tmp_path_factory, hub) -> Server:
    tmp = tmp_path_factory.mktemp("models")
    env = {
        "LLMKIT_MODELS": str(tmp / "models"),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp / "hf"),
        "LLMKIT_SOURCES": "hf",
    }
    s = start_server(tmp, "--served-model-name", "smol", "--api-key", KEY, env=env)
    yield s
    s.stop()


@pytest.fixture()
def client(srv: Server) -> ollama.Client:
    return ollama.Client(host=srv.url, headers=AUTH)


def names(client: ollama.Client) -> list[str]:
    return [m.model for m in client.list().models]


def loaded(srv: Server) -> list[str]:
    return [m["name"] for m in httpx.get(srv.url + "/api/ps", headers=AUTH).json()["models"]]


def test_version_is_ollamas_api_level_and_every_response_names_llmkit(srv):
    r = httpx.get(srv.url + "/api/version", headers=AUTH)
    assert r.json() == {"version": "0.12.0", "llmkit": __version__}
    assert r.headers["x-llmkit-version"] == __version__
    for refused in (httpx.get(srv.url + "/api/tags"), httpx.get(srv.url + "/v1/nothing")):
        assert refused.status_code == 401 and refused.headers["x-llmkit-version"] == __version__


def test_pull_streams_ollamas_progress_then_the_model_is_listed_and_answers(srv, client, hub):
    data = hub.repos["org/smol-GGUF"]["smol-q4_1.gguf"]
    size, sha = len(data), hashlib.sha256(data).hexdigest()
    lines = list(client.pull("org/smol-GGUF", stream=True))
    statuses = [p.status for p in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    # The weights are a layer named by their sha256 (the hub's LFS digest), as in Ollama.
    files = [p for p in lines if p.status == f"pulling {sha[:12]}"]
    assert files and all(p.digest == f"sha256:{sha}" and p.total == size for p in files)
    assert files[-1].completed == size
    assert [p.completed for p in files] == sorted(p.completed for p in files)
    assert "org/smol-GGUF:latest" in names(client) and "smol:latest" in names(client)
    # Served at once, no restart, under both forms of its name.
    for name in ("org/smol-GGUF:latest", "org/smol-GGUF"):
        answer = client.chat(name, messages=[{"role": "user", "content": "Hi"}], options=SHORT)
        assert answer.done and answer.eval_count >= 1
    assert "org/smol-GGUF:latest" in loaded(srv)
    assert "org/smol-GGUF" in [m.id for m in srv.client(KEY).models.list().data]


def test_pull_of_a_repository_no_source_has_is_an_error(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.pull("org/nothing-here")
    assert e.value.status_code == 502 and "Could not pull org/nothing-here" in e.value.error


def test_a_streamed_pull_that_fails_ends_with_an_error_line(srv):
    with httpx.stream(
        "POST", srv.url + "/api/pull", json={"model": "org/nothing-here"}, headers=AUTH
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200
    assert lines[0] == '{"status":"pulling manifest"}'
    assert '"error":"Could not pull org/nothing-here' in lines[-1]


def test_copy_makes_an_alias_that_answers_and_delete_removes_it(srv, client):
    assert client.copy("smol", "mine").status == "success"
    assert "mine:latest" in names(client)
    answer = client.chat("mine:latest", messages=[{"role": "user", "content": "Hi"}], options=SHORT)
    assert answer.done and "mine:latest" in loaded(srv)
    openai_reply = srv.client(KEY).chat.completions.create(
        model="mine", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert openai_reply.model == "mine" and openai_reply.choices[0].message.content is not None
    # As Ollama's docs send it: curl -X DELETE -d '{...}' (a form's content type).
    form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    r = httpx.request("DELETE", srv.url + "/api/delete", content='{"model": "mine"}', headers=form)
    assert r.status_code == 200
    assert "mine:latest" not in names(client)
    with pytest.raises(ollama.ResponseError) as e:
        client.delete("mine")
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        client.chat("mine", messages=[{"role": "user", "content": "Hi"}])
    assert e.value.status_code == 404


def test_create_from_a_blob_with_a_system_prompt_and_parameters(
    srv, client, bundled_path, tmp_path
):
    gguf = tmp_path / "upload.gguf"
    shutil.copy(bundled_path, gguf)
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    blob = f"{srv.url}/api/blobs/{digest}"
    assert httpx.head(blob, headers=AUTH).status_code == 404
    assert client.create_blob(gguf) == digest
    assert httpx.head(blob, headers=AUTH).status_code == 200

    system = "You are a pirate. Answer like one."
    done = client.create(
        "pirate:v1",
        files={"upload.gguf": digest},
        system=system,
        parameters={"num_predict": 3, "temperature": 0},
    )
    assert done.status == "success"
    assert "pirate:v1" in names(client)
    shown = client.show("pirate:v1")
    assert f'SYSTEM """{system}"""' in shown.modelfile
    raw = httpx.post(srv.url + "/api/show", json={"model": "pirate:v1"}, headers=AUTH).json()
    assert raw["system"] == system

    # Applied: the prompt is the one a request with that system message makes, and
    # the stored num_predict holds the reply to 3 tokens.
    hi = [{"role": "user", "content": "Hello"}]
    made = client.chat("pirate:v1", messages=hi)
    by_hand = client.chat(
        "smol", messages=[{"role": "system", "content": system}, *hi], options={"num_predict": 3}
    )
    plain = client.chat("smol", messages=hi, options={"num_predict": 3})
    assert made.prompt_eval_count == by_hand.prompt_eval_count != plain.prompt_eval_count
    assert 1 <= made.eval_count <= 3


def test_create_from_a_gguf_on_the_servers_disk_and_from_a_model(client, bundled_path):
    assert client.create("fromdisk", from_=bundled_path, system="Be brief.").status == "success"
    assert client.show("fromdisk").modelfile.count('SYSTEM """Be brief."""') == 1
    # From a model: what it adds comes along, and the request's own fields win.
    client.create("fromdisk2", from_="fromdisk", parameters={"num_predict": 2})
    shown = client.show("fromdisk2")
    assert 'SYSTEM """Be brief."""' in shown.modelfile and "num_predict 2" in shown.parameters
    answer = client.generate("fromdisk2", prompt="Hi")
    assert 1 <= answer.eval_count <= 2


def test_create_refuses_what_it_cannot_make(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x", files={"m.gguf": "sha256:" + "0" * 64})
    assert e.value.status_code == 400 and "upload it first" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x", from_="no-such-model")
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x", from_="smol", quantize="q4_K_M")
    assert e.value.status_code == 400 and "quantized already (Q4_1)" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.create("x", from_="smol", parameters={"temperature": -1})
    assert e.value.status_code == 400 and "parameters.temperature" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.create("smol", from_="smol")
    assert e.value.status_code == 400 and "configuration serves" in e.value.error


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused(srv):
    digest = "sha256:" + hashlib.sha256(b"one thing").hexdigest()
    r = httpx.post(f"{srv.url}/api/blobs/{digest}", content=b"another", headers=AUTH)
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]
    assert httpx.head(f"{srv.url}/api/blobs/{digest}", headers=AUTH).status_code == 404
    bad = httpx.post(f"{srv.url}/api/blobs/md5:abc", content=b"x", headers=AUTH)
    assert bad.status_code == 400


def test_a_configured_model_and_the_bundled_one_are_not_deleted(client):
    for name in ("smol", "SmolLM2-135M-Instruct"):
        with pytest.raises(ollama.ResponseError) as e:
            client.delete(name)
        assert e.value.status_code in (400, 404)
    assert "smol:latest" in names(client)


def test_management_routes_need_the_key(srv):
    calls = [
        ("POST", "/api/pull", {"model": "org/smol-GGUF"}),
        ("DELETE", "/api/delete", {"model": "org/smol-GGUF"}),
        ("POST", "/api/copy", {"source": "smol", "destination": "k"}),
        ("POST", "/api/create", {"model": "k", "from": "smol"}),
    ]
    for method, path, body in calls:
        r = httpx.request(method, srv.url + path, json=body)
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
    assert httpx.head(f"{srv.url}/api/blobs/sha256:{'0' * 64}").status_code == 401


def catalog_with_extra(tmp_path: Path, bundled_path: str) -> Path:
    """A model directory holding one pulled model, ``org/extra`` (the bundled GGUF)."""
    models = tmp_path / "models"
    (models / "org/extra").mkdir(parents=True)
    shutil.copy(bundled_path, models / "org/extra/extra.gguf")
    (models / "org/extra/.llmkit.json").write_text('{"repo": "org/extra", "complete": true}')
    return models


def test_no_model_management_answers_403_and_serves_only_its_models(tmp_path, bundled_path):
    models = catalog_with_extra(tmp_path, bundled_path)
    s = start_server(
        tmp_path,
        "--no-model-management",
        "--load",
        "first-use",
        env={"LLMKIT_MODELS": str(models)},
    )
    try:
        c = ollama.Client(host=s.url)
        for call in (
            lambda: c.pull("org/extra"),
            lambda: c.copy("SmolLM2-135M-Instruct", "x"),
            lambda: c.create("x", from_="SmolLM2-135M-Instruct"),
        ):
            with pytest.raises(ollama.ResponseError) as e:
                call()
            assert e.value.status_code == 403 and "Model management is turned off" in e.value.error
        r = httpx.request("DELETE", s.url + "/api/delete", json={"model": "org/extra"})
        assert r.status_code == 403 and isinstance(r.json()["error"], str)
        assert names(c) == ["SmolLM2-135M-Instruct:latest"]  # not the catalog's org/extra
        assert "serving the local catalog" not in s.log()
        with pytest.raises(ollama.ResponseError) as e:
            c.chat("org/extra", messages=[{"role": "user", "content": "Hi"}])
        assert e.value.status_code == 404
    finally:
        s.stop()


def test_a_catalog_model_loads_on_demand_within_max_loaded_models(tmp_path, bundled_path):
    models = catalog_with_extra(tmp_path, bundled_path)
    s = start_server(
        tmp_path,
        "--served-model-name",
        "smol",
        "--max-loaded-models",
        "1",
        env={"LLMKIT_MODELS": str(models)},
    )
    try:
        c = ollama.Client(host=s.url)
        assert names(c) == ["smol:latest", "org/extra:latest"]  # on disk: listed, not loaded
        assert f"serving the local catalog on demand ({models}): 1 more model(s)" in s.log()
        ps = [m.model for m in c.ps().models]
        assert ps == ["smol:latest"]
        hi = [{"role": "user", "content": "Hi"}]
        assert c.chat("org/extra", messages=hi, options=SHORT).done
        assert [m.model for m in c.ps().models] == ["org/extra:latest"]
        assert "unloading smol to make room for org/extra" in s.log()
        assert c.chat("smol", messages=hi, options=SHORT).done  # and back
        assert [m.model for m in c.ps().models] == ["smol:latest"]
    finally:
        s.stop()
