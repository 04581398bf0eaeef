"""llmkit's Q4_1 column kernel held to ggml's stock matrix product in the same build.

The patch (scripts/llama-cpp/column-matmul.patch) reads each Q4_1 weight block once
for up to four rows of a step, the few rows a speculative step verifies, and keeps
ggml's loop reachable behind a switch (``build_info.stock_matmul``). Each output
element runs the arithmetic of ggml's one-row dot product in the same order, so the
logits must be the same floats, bit for bit, on either path: the bundled model is
Q4_1, its layers are 576 and 1,536 wide, and steps of 2 to 33 rows cover whole
groups of four, their remainders and ggml's 16-row blocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import llama_cpp
import numpy as np
import pytest

from llmkit.engines.llamacpp import build_info
from llmkit.engines.llamacpp.build_info import column_matmul_on, stock_matmul
from tests.test_attention_kernel import Driver

#: Rows per step: groups of four and the 1 to 3 left over, one ggml block of 16 and
#: the row past it, and the most a speculative step verifies (32 drafts and a token).
ROWS = [2, 3, 4, 5, 6, 7, 16, 17, 33]


def _used() -> bool:
    """Whether a product took the column path since the last asking."""
    return bool(build_info._ggml_cpu().ggml_cpu_llmkit_column_matmul_used())


@pytest.fixture(scope="module")
def driver(bundled_path: str) -> Iterator[Driver]:
    d = Driver(bundled_path, 512, threads=2)  # two: rows split across threads too
    yield d
    d.close()


def steps(d: Driver, stock: bool) -> list[np.ndarray]:
    """A prompt read, then one step of each size in ``ROWS`` on top of it (each
    rewound before the next), and a step of three sequences' rows together."""
    rng = np.random.default_rng(7)
    d.clear()
    out: list[np.ndarray] = []

    def run() -> None:
        out.extend(d.decode([(0, int(t), True) for t in rng.integers(0, d.lm.n_vocab, 40)]))
        for n in ROWS:
            at = d.pos[0]
            out.extend(d.decode([(0, int(t), True) for t in rng.integers(0, d.lm.n_vocab, n)]))
            assert llama_cpp.llama_memory_seq_rm(d.lm.memory, 0, at, -1)
            d.pos[0] = at
        rows = [(s, int(t), True) for s in (1, 2, 3) for t in rng.integers(0, d.lm.n_vocab, s + 1)]
        out.extend(d.decode(rows))

    if stock:
        with stock_matmul():
            assert not column_matmul_on()
            run()
    else:
        run()
    return out


def test_the_test_build_has_the_column_kernel_and_its_switch():
    assert build_info._ggml_cpu() is not None, "the patched llama.cpp is not installed"
    assert column_matmul_on(), "scripts/bootstrap.sh builds llama.cpp with the column kernel"
    with stock_matmul():
        assert not column_matmul_on()
    assert column_matmul_on()


def test_steps_of_several_rows_take_the_column_path_and_one_row_does_not(driver: Driver):
    driver.clear()
    driver.decode([(0, t, True) for t in range(100, 140)])
    _used()
    driver.decode([(0, 7, True)])
    assert not _used()  # one row: ggml's own dot product
    driver.decode([(0, 8, True), (0, 9, True)])
    assert _used()
    with stock_matmul():
        driver.decode([(0, 10, True), (0, 11, True), (0, 12, True)])
        assert not _used()


def test_column_logits_equal_stock_bit_for_bit(driver: Driver):
    ours = steps(driver, stock=False)
    stock = steps(driver, stock=True)
    assert len(ours) == len(stock) == 40 + sum(ROWS) + 2 + 3 + 4
    for i, (a, b) in enumerate(zip(ours, stock, strict=True)):
        assert np.array_equal(a, b), f"row {i}: max difference {np.abs(a - b).max()}"
    # and the rows do differ from one another: the comparison is not of constants
    assert not np.array_equal(ours[40], ours[41])
