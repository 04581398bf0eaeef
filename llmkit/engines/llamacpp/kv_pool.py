"""The llama.cpp engine's KV cache as one shared pool of cells, with a prefix tree
over what the cells hold, so a prefix is computed once and shared.

llama.cpp's unified KV cache tags each cell (one token at one position) with the
set of sequence ids that see it; ``seq_cp`` adds an id to cells without copying
any data, and ``seq_rm`` takes it away, freeing the cells no id holds any more.
Sequence ids are our *lanes*: a running sequence holds one, and when it ends its
lane stays behind, idle, holding the sequence's cells as cache until it is
evicted (least recently used first) for cells or for a lane.

The tree mirrors the cells exactly: a node is a run of cells at consecutive
positions that the same set of lanes sees, and a lane's cells are the nodes on
its path from the root. A new sequence walks the tree with its prompt, gives its
lane the cells of the longest match (one ``seq_cp`` from any lane that holds
them) and writes its own cells in a node of its own from there. So ``used`` is
the sum of the nodes' lengths, with no guessing about what llama.cpp holds.

Not thread-safe: the decode thread alone drives it.
"""

from __future__ import annotations

import collections
from typing import Protocol

from llmkit.engines.llamacpp.host_cache import MIN_TOKENS, HostCache
from llmkit.engines.llamacpp.token_prefix import common_prefix


class Memory(Protocol):
    """What the pool needs of llama.cpp's memory (``llama_memory_seq_*``)."""

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...
    def seq_rm(self, lane: int, p0: int, p1: int) -> bool: ...
    def clear(self) -> None: ...
    def save(self, lane: int) -> bytearray: ...
    def load(self, lane: int, blob: bytearray) -> bool: ...


class Node:
    __slots__ = ("children", "lanes", "parent", "start", "tokens")

    def __init__(self, start: int, parent: Node | None, lanes: set[int]) -> None:
        self.tokens: list[int] = []
        self.start = start
        self.parent = parent
        self.children: list[Node] = []
        self.lanes = lanes

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)


class KvPool:
    def __init__(
        self, cells: int, lanes: int, memory: Memory, host: HostCache | None = None
    ) -> None:
        self.cells = cells
        self.memory = memory
        self.n_lanes = lanes
        self.host = host  # where evicted sequences go, if anywhere
        self.restored = 0  # tokens brought back from ``host``, all told
        self._empty()

    def _empty(self) -> None:
        self.root = Node(0, None, set())
        self.used = 0  # cells holding a token, running or cached
        self._free = list(range(self.n_lanes - 1, -1, -1))
        self._tail: dict[int, Node] = {}  # lane -> the last node on its path
        self._idle: collections.OrderedDict[int, None] = collections.OrderedDict()  # LRU first

    @property
    def free(self) -> int:
        return self.cells - self.used

    # -- finding -------------------------------------------------------------------

    def match(self, tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` the pool already holds."""
        _, _, n = self._walk(tokens)
        return n

    def _walk(self, tokens: list[int]) -> tuple[Node, int, int]:
        """(node, k, n): the first ``n`` tokens match the path to ``node`` and the
        first ``k`` tokens of ``node`` itself."""
        node, n = self.root, 0
        while n < len(tokens):
            best, best_k = None, 0
            for child in node.children:  # a handful: branches where prompts diverge
                k = common_prefix(child.tokens, tokens, n)
                if k > best_k:
                    best, best_k = child, k
            if best is None:
                break
            n += best_k
            if best_k < len(best.tokens):
                return best, best_k, n
            node = best
        return node, len(node.tokens), n

    # -- lanes -----------------------------------------------------------------------

    def open(self, tokens: list[int], limit: int) -> tuple[int, int]:
        """A lane for a sequence whose context starts with ``tokens``, seeing the
        longest cached prefix of them (at most ``limit`` tokens): (lane, shared)."""
        if not self._free:
            self.evict(next(iter(self._idle)))  # ``lanes`` > running: one is idle
        lane = self._free.pop()
        want = tokens[:limit]
        node, k, n = self._walk(want)
        back = self._restore(lane, want, n)
        if n and k < len(node.tokens):
            node = self._split(node, k)
        if n:
            holder = next(iter(node.lanes))
            self.memory.seq_cp(holder, lane, 0, n)
            p: Node | None = node
            while p is not None and p is not self.root:
                p.lanes.add(lane)
                p = p.parent
        self._tail[lane] = node
        if back > n:
            self.append(lane, want[n:back])
            self.restored += back - n
            return lane, back
        return lane, n

    def _restore(self, lane: int, want: list[int], n: int) -> int:
        """Load into ``lane`` the host-saved sequence that shares the most of ``want``
        beyond the ``n`` tokens the pool holds, less those ``n`` (they are shared
        instead): up to where the lane's cells now reach, or 0."""
        if self.host is None:
            return 0
        hit = self.host.find(want, n)
        # The whole saved sequence lands before the part the pool holds is dropped.
        if hit is None or self.free < len(hit[0].tokens):
            return 0
        entry, upto = hit
        if not self.memory.load(lane, entry.blob):
            self.memory.seq_rm(lane, -1, -1)
            return 0
        self.memory.seq_rm(lane, upto, -1)  # past where the prompt parts from it
        if n:
            self.memory.seq_rm(lane, 0, n)
        if upto == len(entry.tokens):
            self.host.take(entry)
        return upto

    def append(self, lane: int, tokens: list[int]) -> None:
        """``tokens`` were decoded into ``lane``'s next cells."""
        node = self._tail[lane]
        if node is self.root or node.children or node.lanes != {lane}:
            # Others see this node too (or branch from its end): start one of our own.
            child = Node(node.end, node, {lane})
            node.children.append(child)
            self._tail[lane] = node = child
        node.tokens.extend(tokens)
        self.used += len(tokens)

    def truncate(self, lane: int, end: int) -> None:
        """Free ``lane``'s cells from position ``end`` on: drafted tokens that were
        not accepted (speculative decoding). They are the last ones ``append``
        wrote, in the lane's own node."""
        node = self._tail.get(lane)
        if node is None or node.end <= end:
            return  # not a lane from before a ``reset``, or nothing past ``end``
        assert node.lanes == {lane} and node.start <= end, "drafts sit in the lane's own node"
        self.memory.seq_rm(lane, end, -1)
        self.used -= node.end - end
        del node.tokens[end - node.start :]
        if not node.tokens and node.parent is not None:
            node.parent.children.remove(node)
            self._tail[lane] = node.parent

    def close(self, lane: int) -> None:
        """The lane's sequence is over: its cells stay as cache, newest last in line."""
        if lane in self._tail:  # not a lane from before a ``reset``
            self._idle[lane] = None

    def evict(self, lane: int) -> int:
        """Take ``lane`` and the cells only it sees out of the pool: how many cells.
        With a host cache, the sequence is saved there first."""
        self._save(lane)
        self.memory.seq_rm(lane, -1, -1)
        freed = 0
        node: Node | None = self._tail.pop(lane)
        while node is not None and node is not self.root:
            node.lanes.discard(lane)
            parent = node.parent
            if not node.lanes and not node.children:
                freed += len(node.tokens)
                assert parent is not None
                parent.children.remove(node)
            node = parent
        self.used -= freed
        self._idle.pop(lane, None)
        self._free.append(lane)
        return freed

    def _save(self, lane: int) -> None:
        """Keep ``lane``'s sequence in the host cache when evicting it loses cells
        worth keeping (those no other lane sees)."""
        if self.host is None:
            return
        path: list[Node] = []
        node: Node | None = self._tail[lane]
        while node is not None and node is not self.root:
            path.append(node)
            node = node.parent
        lost = sum(len(p.tokens) for p in path if p.lanes == {lane})
        if lost < MIN_TOKENS:
            return
        blob = self.memory.save(lane)
        if blob:
            self.host.put([t for p in reversed(path) for t in p.tokens], blob)

    def reclaim(self, need: int, keep: frozenset[int] = frozenset()) -> int:
        """Evict idle lanes, least recently used first, until ``need`` cells are
        free or none is left (``keep``: lanes not to evict); the free cells."""
        for lane in [x for x in self._idle if x not in keep]:
            if self.free >= need:
                break
            self.evict(lane)
        return self.free

    def reset(self) -> None:
        """Forget everything: after a failed step, the cells may hold half of one."""
        self.memory.clear()
        self._empty()

    def split_counts(self, running: set[int]) -> dict[str, int]:
        """Cells ``used`` by running lanes, ``cached`` for idle ones only, ``free``."""
        seen: set[int] = set()
        used = 0
        for lane in running:
            node: Node | None = self._tail.get(lane)
            while node is not None and node is not self.root and id(node) not in seen:
                seen.add(id(node))
                used += len(node.tokens)
                node = node.parent
        return {"used": used, "cached": self.used - used, "free": self.free}

    def _split(self, node: Node, k: int) -> Node:
        """Cut ``node`` after its first ``k`` tokens; the head, which keeps its place."""
        tail = Node(node.start + k, node, set(node.lanes))
        tail.tokens = node.tokens[k:]
        tail.children = node.children
        for child in tail.children:
            child.parent = tail
        del node.tokens[k:]
        node.children = [tail]
        for lane, last in self._tail.items():
            if last is node:
                self._tail[lane] = tail
        return node
