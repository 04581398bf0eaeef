"""``kv_pool.Memory`` over a llama.cpp context's KV memory: the calls the shared
pool makes to copy, drop, save and restore a sequence's cells."""

from __future__ import annotations

import ctypes

import llama_cpp


class ContextMemory:
    """``kv_pool.Memory`` over a llama.cpp context's memory."""

    def __init__(self, ctx: llama_cpp.llama_context_p, memory: llama_cpp.llama_memory_t) -> None:
        self.ctx = ctx
        self.m = memory

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        llama_cpp.llama_memory_seq_cp(self.m, src, dst, p0, p1)

    def seq_rm(self, lane: int, p0: int, p1: int) -> bool:
        return bool(llama_cpp.llama_memory_seq_rm(self.m, lane, p0, p1))

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.m, True)

    def save(self, lane: int) -> bytearray:
        size = llama_cpp.llama_state_seq_get_size(self.ctx, lane)
        blob = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(blob)
        n = llama_cpp.llama_state_seq_get_data(self.ctx, view, size, lane)
        del view  # the buffer can change size again
        del blob[n:]
        return blob

    def load(self, lane: int, blob: bytearray) -> bool:
        view = (ctypes.c_uint8 * len(blob)).from_buffer(blob)
        return llama_cpp.llama_state_seq_set_data(self.ctx, view, len(blob), lane) > 0
