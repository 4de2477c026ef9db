"""Tests for ledger.merkle: RFC 6962 / RFC 9162 vectors, a recursive reference, properties."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    NodeId,
    consistency_nodes,
    consistency_proof,
    frontier_nodes,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    mth,
    node_hash,
    range_hash,
    root,
    subtree_nodes,
    verify_consistency,
    verify_inclusion,
)

# --- Test vectors -----------------------------------------------------------------------
# From github.com/transparency-dev/merkle: testonly/constants.go (leaves, node hashes,
# roots) and proof/verify_test.go (inclusion and consistency proofs). The Go file numbers
# inclusion leaves from 1; they are converted to 0-based indices here.

VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# VECTOR_NODES[level][index]: every complete subtree of the 8-leaf tree.
VECTOR_NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

# VECTOR_ROOTS[size] for size 0..8.
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (0-based index, size) -> audit path.
VECTOR_INCLUSION = {
    (0, 1): [],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}

# (old size, new size) -> consistency proof.
VECTOR_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- Reference: the RFC 9162 section 2.1 definitions, written recursively -------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, straight from the RFC definition."""
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return d[0]
    k = _k(n)
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --- Store helpers ----------------------------------------------------------------------


def build_store(leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
    """Every node emitted by MerkleFrontier.append, keyed by (level, index)."""
    frontier = MerkleFrontier.empty()
    store: dict[NodeId, bytes] = {}
    for lh in leaf_hashes:
        for level, index, h in frontier.append(lh):
            assert (level, index) not in store
            store[(level, index)] = h
    return store


class CountingFetch:
    """Fetch from a store as it stood at ``size`` leaves, counting calls and nodes read."""

    def __init__(self, store: Mapping[NodeId, bytes], size: int) -> None:
        self.store = store
        self.size = size
        self.calls = 0
        self.nodes = 0

    def __call__(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        self.calls += 1
        self.nodes += len(ids)
        assert len(set(ids)) == len(ids), "duplicate node ids in one fetch"
        for level, index in ids:
            assert (index + 1) << level <= self.size, f"({level}, {index}) not complete yet"
        return {i: self.store[i] for i in ids}


def budget(n: int) -> int:
    """Allowed node reads for a tree of n leaves: c * log2(n) + c with c = 2."""
    return 2 * math.floor(math.log2(max(n, 1))) + 2


MAX_N = 300
BIG_LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(MAX_N)]
BIG_STORE = build_store(BIG_LEAVES)
VECTOR_LEAF_HASHES = [leaf_hash(x) for x in VECTOR_LEAVES]
VECTOR_STORE = build_store(VECTOR_LEAF_HASHES)


def hexes(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def flip(b: bytes, bit: int = 3) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:] if b else b"\x01"


# --- Hash primitives and vectors ----------------------------------------------------------


def test_primitives() -> None:
    assert EMPTY_ROOT.hex() == VECTOR_ROOTS[0]
    assert leaf_hash(b"") == _h(b"\x00")
    assert node_hash(b"a", b"b") == _h(b"\x01ab")
    assert mth([]) == EMPTY_ROOT


def test_vector_nodes_are_exactly_the_stored_nodes() -> None:
    expected = {
        (level, index): h for level, row in enumerate(VECTOR_NODES) for index, h in enumerate(row)
    }
    assert {k: v.hex() for k, v in VECTOR_STORE.items()} == expected


def test_vector_roots_every_size() -> None:
    frontier = MerkleFrontier.empty()
    for size in range(len(VECTOR_LEAVES) + 1):
        want = VECTOR_ROOTS[size]
        fetch = CountingFetch(VECTOR_STORE, size)
        assert root(size, fetch).hex() == want
        assert fetch.calls <= 1
        assert mth(VECTOR_LEAF_HASHES[:size]).hex() == want
        assert ref_mth(VECTOR_LEAF_HASHES[:size]).hex() == want
        assert frontier.size == size
        assert frontier.root().hex() == want
        if size < len(VECTOR_LEAVES):
            frontier.append(VECTOR_LEAF_HASHES[size])


@pytest.mark.parametrize(
    ("index", "size"), [(i, n) for n in range(1, 9) for i in range(n)], ids=str
)
def test_vector_inclusion_every_pair(index: int, size: int) -> None:
    fetch = CountingFetch(VECTOR_STORE, size)
    proof = inclusion_proof(index, size, fetch)
    assert fetch.calls <= 1
    assert proof == ref_path(index, VECTOR_LEAF_HASHES[:size])
    if (index, size) in VECTOR_INCLUSION:
        assert hexes(proof) == VECTOR_INCLUSION[(index, size)]
    root_hash = bytes.fromhex(VECTOR_ROOTS[size])
    assert verify_inclusion(VECTOR_LEAF_HASHES[index], index, size, proof, root_hash)


@pytest.mark.parametrize(
    ("old", "new"), [(m, n) for n in range(1, 9) for m in range(1, n + 1)], ids=str
)
def test_vector_consistency_every_pair(old: int, new: int) -> None:
    fetch = CountingFetch(VECTOR_STORE, new)
    proof = consistency_proof(old, new, fetch)
    assert fetch.calls <= 1
    assert proof == ref_proof(old, VECTOR_LEAF_HASHES[:new])
    if (old, new) in VECTOR_CONSISTENCY:
        assert hexes(proof) == VECTOR_CONSISTENCY[(old, new)]
    old_root = bytes.fromhex(VECTOR_ROOTS[old])
    new_root = bytes.fromhex(VECTOR_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


def test_vector_proofs_listed_are_all_checked() -> None:
    # Guards against a typo in the tables silently skipping a vector.
    assert set(VECTOR_INCLUSION) <= {(i, n) for n in range(1, 9) for i in range(n)}
    assert set(VECTOR_CONSISTENCY) <= {(m, n) for n in range(1, 9) for m in range(1, n + 1)}


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root_hash: bytes, lh: bytes
) -> list[tuple[int, int, list[bytes], bytes, bytes]]:
    """Corruptions that must all fail (mirrors the transparency-dev/merkle probes)."""
    probes = [
        (index - 1, size, proof, root_hash, lh),
        (index + 1, size, proof, root_hash, lh),
        (index ^ 2, size, proof, root_hash, lh),
        (index, size * 2, proof, root_hash, lh),
        (index, size // 2, proof, root_hash, lh),
        (index, size, proof, root_hash, b"WrongLeaf"),
        (index, size, proof, EMPTY_ROOT, lh),
        (index, size, proof, SOME_HASH, lh),
        (index, size, [*proof, b""], root_hash, lh),
        (index, size, [*proof, root_hash], root_hash, lh),
        (index, size, [b"", *proof], root_hash, lh),
        (index, size, [root_hash, *proof], root_hash, lh),
    ]
    for i in range(len(proof)):
        probes.append((index, size, [*proof[:i], flip(proof[i]), *proof[i + 1 :]], root_hash, lh))
    if proof:
        probes.append((index, size, proof[:-1], root_hash, lh))
    if len(proof) > 1:
        probes.append((index, size, [proof[0], SOME_HASH, *proof[1:]], root_hash, lh))
    return probes


@pytest.mark.parametrize(("index", "size"), [k for k in VECTOR_INCLUSION if k[1] > 1], ids=str)
def test_vector_inclusion_rejects_corruptions(index: int, size: int) -> None:
    proof = [bytes.fromhex(h) for h in VECTOR_INCLUSION[(index, size)]]
    root_hash = bytes.fromhex(VECTOR_ROOTS[size])
    lh = VECTOR_LEAF_HASHES[index]
    assert verify_inclusion(lh, index, size, proof, root_hash)
    for probe in _inclusion_probes(index, size, proof, root_hash, lh):
        p_index, p_size, p_proof, p_root, p_leaf = probe
        assert not verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root), probe


@pytest.mark.parametrize(("old", "new"), [k for k in VECTOR_CONSISTENCY if k[0] < k[1]], ids=str)
def test_vector_consistency_rejects_corruptions(old: int, new: int) -> None:
    proof = [bytes.fromhex(h) for h in VECTOR_CONSISTENCY[(old, new)]]
    r1 = bytes.fromhex(VECTOR_ROOTS[old])
    r2 = bytes.fromhex(VECTOR_ROOTS[new])
    assert verify_consistency(old, new, r1, r2, proof)
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        probes.append((old, new, r1, r2, [*proof[:i], flip(proof[i], 4), *proof[i + 1 :]]))
    for probe in probes:
        assert not verify_consistency(*probe), probe


def test_verify_edge_cases() -> None:
    lh = leaf_hash(b"data")
    assert verify_inclusion(lh, 0, 1, [], lh)
    assert not verify_inclusion(lh, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], lh)
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)

    r1, r2 = b"don't care 1", b"don't care 2"
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, r2, [])
    assert not verify_consistency(0, 5, r1, r2, [])  # size 0 means the empty root
    assert not verify_consistency(0, 5, EMPTY_ROOT, r2, [EMPTY_ROOT])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r1, [EMPTY_ROOT])
    assert not verify_consistency(1, 0, r1, r2, [])
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])
    assert not verify_consistency(-1, 2, r1, r2, [])


# --- Addressing and range hashes ----------------------------------------------------------


def test_subtree_nodes_shape() -> None:
    assert subtree_nodes(0, 0) == []
    assert subtree_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert subtree_nodes(4, 10) == [(2, 1), (1, 4)]
    assert subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    assert frontier_nodes(0) == []
    assert frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]
    for start, end in [(1, 3), (2, 6), (4, 13), (-1, 0), (3, 2)]:
        with pytest.raises(ValueError, match="range"):
            subtree_nodes(start, end)


def test_range_hash_nests_from_the_right() -> None:
    d = VECTOR_LEAF_HASHES
    nodes = {(2, 0): ref_mth(d[0:4]), (1, 2): ref_mth(d[4:6]), (0, 6): d[6]}
    want = node_hash(nodes[(2, 0)], node_hash(nodes[(1, 2)], nodes[(0, 6)]))
    assert range_hash(0, 7, nodes) == want == bytes.fromhex(VECTOR_ROOTS[7])
    left_fold = node_hash(node_hash(nodes[(2, 0)], nodes[(1, 2)]), nodes[(0, 6)])
    assert range_hash(0, 7, nodes) != left_fold
    assert range_hash(3, 3, {}) == EMPTY_ROOT


@st.composite
def aligned_ranges(draw: st.DrawFn) -> tuple[int, int]:
    count = draw(st.integers(1, MAX_N))
    unit = 1 << (count.bit_length() - 1)
    start = unit * draw(st.integers(0, (MAX_N - count) // unit))
    return start, start + count


@given(aligned_ranges())
def test_range_hash_matches_reference(rng: tuple[int, int]) -> None:
    start, end = rng
    nodes = subtree_nodes(start, end)
    assert len(nodes) == (end - start).bit_count()
    assert range_hash(start, end, BIG_STORE) == ref_mth(BIG_LEAVES[start:end])


def test_errors() -> None:
    fetch = CountingFetch(BIG_STORE, 10)
    for index, size in [(0, 0), (-1, 5), (5, 5), (0, -1)]:
        with pytest.raises(ValueError, match="out of range"):
            inclusion_proof(index, size, fetch)
        with pytest.raises(ValueError, match="out of range"):
            inclusion_nodes(index, size)
    for old, new in [(0, 5), (6, 5), (-1, 3), (0, 0)]:
        with pytest.raises(ValueError, match="consistency"):
            consistency_proof(old, new, fetch)
        with pytest.raises(ValueError, match="consistency"):
            consistency_nodes(old, new)
    with pytest.raises(ValueError, match="size"):
        root(-1, fetch)
    with pytest.raises(ValueError, match="size"):
        frontier_nodes(-1)
    with pytest.raises(ValueError, match="hashes"):
        MerkleFrontier(3, [SOME_HASH])
    assert fetch.calls == 0
    with pytest.raises(KeyError, match="did not return"):
        root(3, lambda ids: {})


# --- Properties over trees of up to 300 leaves --------------------------------------------


def test_frontier_roots_and_nodes_every_size() -> None:
    frontier = MerkleFrontier.empty()
    for n in range(MAX_N + 1):
        assert frontier.size == n
        assert frontier.root() == mth(BIG_LEAVES[:n])
        assert len(frontier.hashes) == n.bit_count() <= math.log2(max(n, 1)) + 1
        assert frontier.hashes == [BIG_STORE[i] for i in frontier_nodes(n)]
        if n < MAX_N:
            emitted = frontier.append(BIG_LEAVES[n])
            assert emitted[0] == (0, n, BIG_LEAVES[n])
            # Exactly the nodes whose last leaf is leaf n become complete.
            want = [
                (lv, n >> lv) for lv in range(n.bit_length() + 1) if ((n + 1) >> lv) << lv == n + 1
            ]
            assert [(lv, i) for lv, i, _ in emitted] == want
            for lv, i, h in emitted:
                assert h == ref_mth(BIG_LEAVES[i << lv : (i + 1) << lv])


@given(st.integers(0, MAX_N))
def test_stored_root_matches_from_scratch(n: int) -> None:
    fetch = CountingFetch(BIG_STORE, n)
    got = root(n, fetch)
    assert got == mth(BIG_LEAVES[:n]) == ref_mth(BIG_LEAVES[:n])
    assert fetch.calls <= 1
    assert fetch.nodes <= budget(n)


@given(st.lists(st.binary(max_size=8), max_size=40))
def test_mth_matches_reference_on_arbitrary_leaves(data: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in data]
    stored_root = root(len(hashes), CountingFetch(build_store(hashes), len(hashes)))
    assert mth(hashes) == ref_mth(hashes) == stored_root


@given(st.data())
def test_inclusion_proofs(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX_N), label="size")
    index = data.draw(st.integers(0, n - 1), label="index")
    fetch = CountingFetch(BIG_STORE, n)
    proof = inclusion_proof(index, n, fetch)
    assert fetch.calls <= 1
    assert fetch.nodes == len(inclusion_nodes(index, n)) <= budget(n)
    assert proof == ref_path(index, BIG_LEAVES[:n])
    root_hash = mth(BIG_LEAVES[:n])
    lh = BIG_LEAVES[index]
    assert verify_inclusion(lh, index, n, proof, root_hash)
    # Tampering with the leaf, root, index or path must fail.
    assert not verify_inclusion(flip(lh), index, n, proof, root_hash)
    assert not verify_inclusion(lh, index, n, proof, flip(root_hash))
    for other in {index - 1, index + 1, index ^ 1, index ^ 2} - {index}:
        assert not verify_inclusion(lh, other, n, proof, root_hash)
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
        assert not verify_inclusion(lh, index, n, bad, root_hash)
    assert not verify_inclusion(lh, index, n, [*proof, SOME_HASH], root_hash)
    assert not verify_inclusion(lh, index, n, [SOME_HASH, *proof], root_hash)
    if proof:
        assert not verify_inclusion(lh, index, n, proof[:-1], root_hash)
        assert not verify_inclusion(lh, index, n, proof[1:], root_hash)


@given(st.data())
def test_consistency_proofs(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX_N), label="new_size")
    m = data.draw(st.integers(1, n), label="old_size")
    fetch = CountingFetch(BIG_STORE, n)
    proof = consistency_proof(m, n, fetch)
    assert fetch.calls <= 1
    assert fetch.nodes == len(consistency_nodes(m, n)) <= budget(n)
    assert proof == ref_proof(m, BIG_LEAVES[:n])
    r1, r2 = mth(BIG_LEAVES[:m]), mth(BIG_LEAVES[:n])
    assert verify_consistency(m, n, r1, r2, proof)
    if m == n:
        assert proof == []
        assert not verify_consistency(m, n, r1, flip(r2), proof)
        return
    # Tampering with either root, the sizes or the path must fail.
    assert not verify_consistency(m, n, flip(r1), r2, proof)
    assert not verify_consistency(m, n, r1, flip(r2), proof)
    assert not verify_consistency(m, n, r2, r1, proof)
    assert not verify_consistency(m, n, r1, r2, [])
    assert not verify_consistency(n, m, r1, r2, proof)
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i], 4), *proof[i + 1 :]]
        assert not verify_consistency(m, n, r1, r2, bad)
    assert not verify_consistency(m, n, r1, r2, [*proof, SOME_HASH])
    assert not verify_consistency(m, n, r1, r2, [SOME_HASH, *proof])
    assert not verify_consistency(m, n, r1, r2, proof[:-1])
    assert not verify_consistency(m, n, r1, r2, proof[1:])


@given(st.data())
def test_frontier_load_then_append_matches_uninterrupted(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, MAX_N), label="final_size")
    k = data.draw(st.integers(0, n), label="restart_at")
    straight = MerkleFrontier.empty()
    straight_out = []
    for i in range(n):
        emitted = straight.append(BIG_LEAVES[i])
        if i >= k:
            straight_out.append(emitted)
    fetch = CountingFetch(BIG_STORE, k)
    resumed = MerkleFrontier.load(k, fetch)
    assert fetch.calls <= 1
    assert fetch.nodes == k.bit_count() <= budget(k)
    assert resumed.size == k
    assert resumed.root() == mth(BIG_LEAVES[:k])
    resumed_out = [resumed.append(BIG_LEAVES[i]) for i in range(k, n)]
    assert resumed_out == straight_out
    assert resumed.size == straight.size == n
    assert resumed.hashes == straight.hashes
    assert resumed.root() == straight.root()


@given(st.data())
def test_a_copied_frontier_goes_on_alone(data: st.DataObject) -> None:
    """What the writer keeps to undo a failed unit: appending to either side leaves the
    other as it was, and each goes on as an uninterrupted frontier would."""
    k = data.draw(st.integers(0, MAX_N - 1), label="copied_at")
    more = data.draw(st.integers(1, MAX_N - k), label="appended_after")
    frontier = MerkleFrontier.empty()
    for i in range(k):
        frontier.append(BIG_LEAVES[i])
    twin = frontier.copy()
    assert (twin.size, twin.hashes, twin.root()) == (k, frontier.hashes, mth(BIG_LEAVES[:k]))
    for i in range(k, k + more):
        twin.append(BIG_LEAVES[i])
    assert (frontier.size, frontier.root()) == (k, mth(BIG_LEAVES[:k]))
    assert twin.root() == mth(BIG_LEAVES[: k + more])
    frontier.append(BIG_LEAVES[k])
    assert frontier.root() == mth(BIG_LEAVES[: k + 1])
    assert twin.root() == mth(BIG_LEAVES[: k + more])


@settings(max_examples=25)
@given(st.integers(1, 1 << 40), st.data())
def test_addresses_are_logarithmic_for_huge_trees(n: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, n - 1), label="index")
    old = data.draw(st.integers(1, n), label="old_size")
    for ids in (frontier_nodes(n), inclusion_nodes(index, n), consistency_nodes(old, n)):
        assert len(ids) <= budget(n)
        assert len(set(ids)) == len(ids)
        assert all((i + 1) << lv <= n for lv, i in ids)
