"""RFC 9162 (Certificate Transparency v2) Merkle tree over the log, read from stored nodes.

The tree is the one of RFC 9162 section 2.1 (identical to RFC 6962):

* leaf hash  = SHA-256(0x00 || leaf bytes)
* node hash  = SHA-256(0x01 || left || right)
* empty root = SHA-256(b"")
* MTH(D[n]) for n > 1 splits at k, the largest power of two smaller than n:
  MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n])).

Node addressing: ``(level, index)`` names the complete subtree of ``2**level`` leaves
covering leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf hash.
A store keeps every complete node. This module does no I/O: it works out which nodes a
root or proof needs, asks for all of them in one ``fetch`` call, and combines them. Every
root and proof for a tree of size n reads O(log n) nodes, and only nodes that are already
complete at that size, so proofs for old sizes stay valid however far the log has grown.

The verifiers (:func:`verify_inclusion`, :func:`verify_consistency`) follow the
algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2 and share no code with the proof
generators, so each side checks the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from hashlib import sha256
from typing import TypeAlias

NodeId: TypeAlias = tuple[int, int]
"""``(level, index)``: the complete subtree of leaves [index * 2**level, (index+1) * 2**level)."""

FetchNodes: TypeAlias = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]
"""Batch node reader: one call is one store query and must return every id asked for."""

EMPTY_ROOT: bytes = sha256(b"").digest()
"""Root hash of the empty tree, SHA-256 of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data), the hash of a leaf holding ``data``."""
    h = sha256(_LEAF_PREFIX)
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), the hash of an interior node."""
    return sha256(_NODE_PREFIX + left + right).digest()


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH of the given leaf hashes, computed from scratch in O(n).

    Pairs neighbours level by level and carries an unpaired last node up unchanged,
    which yields exactly the RFC 9162 tree shape. Reads no stored nodes, so it is the
    independent reference that stored roots are audited against.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if odd is not None:
            level.append(odd)
    return level[0]


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_range(start: int, end: int) -> None:
    if not 0 <= start <= end:
        raise ValueError(f"invalid leaf range [{start}, {end}): need 0 <= start <= end")
    count = end - start
    if count and start % (1 << (count.bit_length() - 1)):
        raise ValueError(
            f"leaf range [{start}, {end}) is not an RFC 9162 subtree: start must be a "
            f"multiple of the largest power of two <= {count}"
        )


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """Return the complete nodes that, concatenated left to right, cover leaves [start, end).

    The range must be one that occurs as a subtree of some RFC 9162 tree: ``start`` is a
    multiple of the largest power of two not above ``end - start`` (``start == 0`` always
    qualifies). The nodes are then one per set bit of ``end - start``, in strictly
    decreasing level; an empty range gives ``[]``. Raises ``ValueError`` otherwise.
    """
    _check_range(start, end)
    count = end - start
    nodes: list[NodeId] = []
    pos = start
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """Return MTH(D[start:end]) from the stored nodes named by ``subtree_nodes(start, end)``.

    With decomposition ``A, B, ..., Z`` (decreasing size) the MTH is
    ``node_hash(A, node_hash(B, ... node_hash(Y, Z)))``: the RFC split puts the largest
    power of two on the left, so the fold runs from the right. An empty range hashes to
    :data:`EMPTY_ROOT`. Raises ``KeyError`` if ``nodes`` lacks a needed node.
    """
    ids = subtree_nodes(start, end)
    if not ids:
        return EMPTY_ROOT
    h = nodes[ids[-1]]
    for node_id in reversed(ids[:-1]):
        h = node_hash(nodes[node_id], h)
    return h


def _fetch(fetch: FetchNodes, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
    """Read ``ids`` with a single ``fetch`` call (none if empty), checking all came back."""
    if not ids:
        return {}
    got = fetch(ids)
    missing = [i for i in ids if i not in got]
    if missing:
        raise KeyError(f"node store did not return {len(missing)} node(s), e.g. {missing[0]}")
    return got


def children(ids: Sequence[NodeId]) -> list[NodeId]:
    """The two children of each of `ids` that is not a leaf, left then right."""
    return [(level - 1, 2 * idx + side) for level, idx in ids if level > 0 for side in (0, 1)]


def unlike_children(ids: Sequence[NodeId], nodes: Mapping[NodeId, bytes]) -> NodeId | None:
    """The first of `ids` (leaves passed over) that `nodes` does not hold as the hash of
    its two children, one of the three missing included; None if every one is."""
    for level, idx in ids:
        if level == 0:
            continue
        left, right = nodes.get((level - 1, 2 * idx)), nodes.get((level - 1, 2 * idx + 1))
        if left is None or right is None or nodes.get((level, idx)) != node_hash(left, right):
            return (level, idx)
    return None


UNLIKE_CHILDREN = "is not its children's hash (it or one of them was changed)"
"""What is said of a node :func:`unlike_children` finds, after its id."""


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")


def frontier_nodes(size: int) -> list[NodeId]:
    """Return the complete nodes covering [0, size): one per set bit of ``size``, largest first.

    These are the only nodes :func:`root` and :meth:`MerkleFrontier.load` read.
    """
    _check_size(size)
    return subtree_nodes(0, size)


def root(size: int, fetch: FetchNodes) -> bytes:
    """Return MTH of the first ``size`` leaves, reading popcount(size) nodes in one fetch."""
    ids = frontier_nodes(size)
    return range_hash(0, size, _fetch(fetch, ids))


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PATH(index, D[size]), ordered from the leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def inclusion_nodes(index: int, size: int) -> list[NodeId]:
    """Return every stored node :func:`inclusion_proof` reads (at most 2 * bit_length(size))."""
    return [n for s, e in _inclusion_ranges(index, size) for n in subtree_nodes(s, e)]


def inclusion_proof(index: int, size: int, fetch: FetchNodes) -> list[bytes]:
    """Return the RFC 9162 section 2.1.3.1 inclusion proof (audit path) of leaf ``index``.

    ``index`` is 0-based and must satisfy ``0 <= index < size`` (else ``ValueError``).
    The path lists sibling hashes from the leaf up to the root; one fetch call at most.
    """
    ranges = _inclusion_ranges(index, size)
    nodes = _fetch(fetch, [n for s, e in ranges for n in subtree_nodes(s, e)])
    return [range_hash(s, e, nodes) for s, e in ranges]


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PROOF(old_size, D[new_size]), in proof order."""
    if not 0 < old_size <= new_size:
        raise ValueError(
            f"invalid consistency sizes {old_size} -> {new_size}: need 0 < old_size <= new_size"
        )
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    old_is_whole_subtree = True  # the b flag of SUBPROOF
    while old_size != hi:
        mid = lo + _split(hi - lo)
        if old_size <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
            old_is_whole_subtree = False
    if not old_is_whole_subtree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def consistency_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """Return every stored node :func:`consistency_proof` reads (O(log new_size))."""
    return [n for s, e in _consistency_ranges(old_size, new_size) for n in subtree_nodes(s, e)]


def consistency_proof(old_size: int, new_size: int, fetch: FetchNodes) -> list[bytes]:
    """Return the RFC 9162 section 2.1.4.1 consistency proof from ``old_size`` to ``new_size``.

    Requires ``0 < old_size <= new_size`` (else ``ValueError``); equal sizes give ``[]``.
    One fetch call at most.
    """
    ranges = _consistency_ranges(old_size, new_size)
    nodes = _fetch(fetch, [n for s, e in ranges for n in subtree_nodes(s, e)])
    return [range_hash(s, e, nodes) for s, e in ranges]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Return True iff ``path`` proves leaf hash ``leaf`` is at ``index`` in the tree ``root``.

    ``leaf`` is the leaf *hash* (``leaf_hash(data)``), as in RFC 9162 section 2.1.3.2,
    whose algorithm this is. Out-of-range ``index``/``size`` simply fail.
    """
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(_NODE_PREFIX + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """Return True iff ``path`` proves the tree ``old_root`` is a prefix of ``new_root``.

    Implements RFC 9162 section 2.1.4.2. Equal sizes need equal roots and an empty path;
    an old size of 0 needs ``old_root == EMPTY_ROOT`` and an empty path (the empty tree
    is a prefix of every tree). Negative sizes or ``old_size > new_size`` fail.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT
    if not path:
        return False
    items = list(path)
    if old_size & (old_size - 1) == 0:  # exact power of two: old root is a node of new tree
        items.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(_NODE_PREFIX + c + fr).digest()
            sr = sha256(_NODE_PREFIX + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class MerkleFrontier:
    """Incremental appender: the complete nodes covering [0, size), so appends read nothing.

    Holds one hash per set bit of ``size`` (the nodes of :func:`frontier_nodes`, i.e. the
    right-most complete node of each level that no larger complete node covers): at most
    ``log2(size) + 1`` hashes. Appending leaf ``size`` merges it with the trailing nodes
    of equal size, exactly like a binary increment.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self, size: int, stack: Sequence[bytes]) -> None:
        """Build from ``size`` and the hashes of ``frontier_nodes(size)``, largest first."""
        _check_size(size)
        if len(stack) != size.bit_count():
            raise ValueError(
                f"a frontier of size {size} holds {size.bit_count()} hashes, got {len(stack)}"
            )
        self._size = size
        self._stack = list(stack)

    @classmethod
    def empty(cls) -> MerkleFrontier:
        """Return the frontier of the empty tree."""
        return cls(0, [])

    @classmethod
    def load(cls, size: int, fetch: FetchNodes) -> MerkleFrontier:
        """Return the frontier of a stored tree of ``size`` leaves (one fetch, popcount nodes)."""
        ids = frontier_nodes(size)
        nodes = _fetch(fetch, ids)
        return cls(size, [nodes[i] for i in ids])

    def copy(self) -> MerkleFrontier:
        """An independent frontier at the same size (no checks: this one is valid)."""
        twin = type(self).__new__(type(self))
        twin._size = self._size
        twin._stack = self._stack.copy()
        return twin

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """Copy of the frontier hashes, in the order of ``frontier_nodes(size)``."""
        return list(self._stack)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf hash; return every ``(level, index, hash)`` completed by it.

        The first entry is the leaf itself ``(0, old_size, leaf_hash)``, followed by each
        newly complete ancestor in increasing level. The store must insert all of them.
        """
        n = self._size
        stack = self._stack
        out = [(0, n, leaf_hash)]
        h = leaf_hash
        level = 0
        while n & 1:
            h = sha256(_NODE_PREFIX + stack.pop() + h).digest()
            n >>= 1
            level += 1
            out.append((level, n, h))
        stack.append(h)
        self._size += 1
        return out

    def root(self) -> bytes:
        """Return MTH of the current tree, computed from the frontier alone."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = node_hash(left, h)
        return h
