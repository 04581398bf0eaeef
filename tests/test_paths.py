"""No name a user or a hub sends reaches outside llmkit's directories: repository
ids for pull (and the catalog's directories), file names a hub lists, model
names in requests (they only ever name served models)."""

from __future__ import annotations

import httpx
import pytest

from llmkit.errors import ModelSpecError
from llmkit.models.catalog import Catalog
from llmkit.models.download import RemoteFile, select

ESCAPES = ["../../etc", "..", "owner/..", "/etc/passwd", "a/b/c", "owner\\..\\x", "./x", "a/.", ""]


@pytest.mark.parametrize("repo", ESCAPES)
def test_repo_ids_that_are_paths_are_refused(tmp_path, repo):
    with pytest.raises(ModelSpecError, match="not a repository id"):
        Catalog(tmp_path / "models").directory_for(repo)


def test_real_repo_ids_land_inside_the_models_folder(tmp_path):
    catalog = Catalog(tmp_path / "models")
    for repo in ("Qwen/Qwen2-0.5B-Instruct-GGUF", "TheBloke/Llama-2.7b.v1", "gpt2"):
        assert catalog.directory_for(repo).is_relative_to(tmp_path / "models")


def test_files_a_hub_lists_outside_the_repository_are_never_fetched():
    listing = [
        RemoteFile("model.Q4_K_M.gguf", 10),
        RemoteFile("../../../root/.bashrc", 10),
        RemoteFile("/etc/cron.d/x", 10),
        RemoteFile("sub/../../escape.gguf", 10),
        RemoteFile("C:/x.gguf", 10),
        RemoteFile("sub/dir/config.json", 10),
    ]
    assert [f.path for f in select(listing, (), ())] == ["model.Q4_K_M.gguf", "sub/dir/config.json"]


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "..%2F..%2Fetc"])
def test_model_names_in_requests_only_name_served_models(server, name):
    r = httpx.post(server.url + "/api/show", json={"model": name})
    assert r.status_code == 404 and "root:" not in r.text
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(server.v1 + "/chat/completions", json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
