"""A throwaway PostgreSQL for the tests: Debian's server binaries, a cluster in a
temporary directory on a free loopback port, a fresh database per test. Import
the fixtures into a test module that needs them (``from tests.pg import ...``)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import psycopg
import pytest


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    assert found, (
        f"{name} not found: install PostgreSQL (scripts/bootstrap.sh test does it on Debian)"
    )
    return found


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway cluster on a free loopback port; yields its admin URL."""
    data = tempfile.mkdtemp(prefix="llmkit-pg-")
    as_postgres: list[str] = []
    if os.getuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    from tests.conftest import free_port  # conftest imports this module: not at the top

    port = free_port()
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -h 127.0.0.1"
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("pg_ctl"),
            "-D",
            data,
            "-o",
            opts,
            "-l",
            f"{data}/log",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_postgres, _pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture()
def pg_url(postgres: str) -> str:
    """A fresh database per test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.replace("+psycopg", "") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres}/{name}"
