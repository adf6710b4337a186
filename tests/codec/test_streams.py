"""Symbol streams: bit packing, Huffman, ANS, and the per-stream coder choice."""

import numpy as np
import pytest

from netshrink.codec import ans, bitpack, entropy, huffman
from netshrink.codec.validate import Corrupt

CODERS = {"huffman": huffman, "ans": ans}


def skewed(n, alphabet, seed=0, concentration=0.3):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, concentration))
    return rng.choice(alphabet, size=n, p=p).astype(np.uint8)


@pytest.mark.parametrize("width", range(9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 1003])
def test_bitpack_round_trip_and_size(width, n):
    sym = np.random.default_rng(width * 31 + n).integers(0, 1 << width, n).astype(np.uint8)
    packed = bitpack.pack(sym, width)
    assert len(packed) == (n * width + 7) // 8
    np.testing.assert_array_equal(bitpack.unpack(packed, n, width), sym)


def test_bitpack_is_msb_first():
    assert bitpack.pack(np.array([1, 2, 3], np.uint8), 3) == bytes([0b00101001, 0b10000000])
    assert bitpack.pack_wide(np.array([5, 1]), 10) == bytes([0b00000001, 0b01000000, 0b00010000])
    np.testing.assert_array_equal(bitpack.unpack_wide(bytes([1, 64, 16]), 2, 10), [5, 1])


def test_bitpack_rejects_wrong_length():
    with pytest.raises(Corrupt):
        bitpack.unpack(b"\x00" * 3, 8, 4)


def test_huffman_lengths_match_textbook_example():
    # CLRS 16.3: frequencies a..f = 45,13,12,16,9,5 -> a:1, b,c,d:3, e,f:4 bits.
    lengths = huffman.code_lengths(np.array([45, 13, 12, 16, 9, 5]))
    np.testing.assert_array_equal(lengths, [1, 3, 3, 3, 4, 4])


def test_huffman_codes_are_canonical():
    codes, order = huffman.canonical_codes(np.array([2, 1, 3, 3]))
    # sorted by (length, symbol): 1 -> 0, 0 -> 10, 2 -> 110, 3 -> 111
    np.testing.assert_array_equal(codes, [0b10, 0b0, 0b110, 0b111])
    np.testing.assert_array_equal(order, [1, 0, 2, 3])
    payload = huffman.encode(np.array([1, 0, 2, 3], np.uint8), 4, np.array([2, 1, 3, 3]))
    assert payload[-2:] == bytes([0b01011011, 0b10000000])  # 0 10 110 111, zero-padded


def test_huffman_length_limit_holds_for_fibonacci_counts():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(np.array(fib))
    assert lengths.max() <= huffman.MAX_LEN
    assert (2.0 ** -lengths.astype(float)).sum() == pytest.approx(1.0)  # complete code
    sym = np.repeat(np.arange(30), np.minimum(fib, 3000)).astype(np.uint8)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(sym, 30), sym.size, 30), sym)


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("n", [0, 1, 2, 4095, 4096, 4097, 20000])
@pytest.mark.parametrize("alphabet", [1, 2, 3, 17, 256])
def test_coder_round_trip(coder, n, alphabet):
    mod = CODERS[coder]
    sym = skewed(n, alphabet, seed=n + alphabet)
    np.testing.assert_array_equal(mod.decode(mod.encode(sym, alphabet), n, alphabet), sym)


@pytest.mark.parametrize("coder", CODERS)
def test_single_symbol_stream(coder):
    mod = CODERS[coder]
    sym = np.full(10000, 5, np.uint8)
    payload = mod.encode(sym, 8)
    assert len(payload) < 1300  # <= 1 bit per symbol plus tables
    np.testing.assert_array_equal(mod.decode(payload, sym.size, 8), sym)


@pytest.mark.parametrize("coder", CODERS)
def test_empty_stream(coder):
    mod = CODERS[coder]
    assert mod.encode(np.zeros(0, np.uint8), 4) == b""
    assert mod.decode(b"", 0, 4).size == 0


def test_ans_within_two_percent_of_shannon_on_skewed_stream():
    sym = skewed(100_000, 32, seed=3)
    bound = entropy.shannon_bytes(np.bincount(sym, minlength=32))
    size = len(ans.encode(sym, 32))
    assert bound <= size <= 1.02 * bound


def test_huffman_within_its_bounds_on_skewed_stream():
    # Huffman is optimal among prefix codes: H <= L < H + 1 bit per symbol, and exact
    # (up to its tables) on a dyadic distribution.
    sym = skewed(100_000, 32, seed=3)
    counts = np.bincount(sym, minlength=32)
    bound = entropy.shannon_bytes(counts)
    size = len(huffman.encode(sym, 32))
    assert bound <= size <= bound + sym.size / 8
    rng = np.random.default_rng(4)
    dyadic = rng.choice(5, size=100_000, p=[1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 16]).astype(np.uint8)
    bound = entropy.shannon_bytes(np.bincount(dyadic))
    assert bound <= len(huffman.encode(dyadic, 5)) <= 1.02 * bound


def test_best_coder_within_two_percent_on_realistic_streams():
    rng = np.random.default_rng(5)
    n = 100_000
    streams = {
        "gaps": (np.minimum(rng.geometric(0.05, n) - 1, 255), 256),
        "index": (np.where(rng.random(n) < 0.95, 0, rng.integers(1, 32, n)), 32),
        "byte plane": (np.clip(np.rint(rng.normal(128, 20, n)), 0, 255).astype(int), 256),
    }
    for name, (sym, alphabet) in streams.items():
        sym = sym.astype(np.uint8)
        st = entropy.encode_stream(sym, alphabet)
        bound = entropy.shannon_bytes(np.bincount(sym, minlength=alphabet))
        assert bound <= len(st.payload) <= 1.02 * bound, name
        np.testing.assert_array_equal(entropy.decode_stream(st.desc, st.payload, n, alphabet), sym)


def test_best_coder_picks_the_smallest():
    for sym, alphabet in [(skewed(5000, 16, seed=1), 16), (np.arange(256, dtype=np.uint8), 256),
                          (np.random.default_rng(2).integers(0, 4, 3000).astype(np.uint8), 4)]:
        st = entropy.encode_stream(sym, alphabet)
        sizes = {"raw": bitpack.packed_size(sym.size, entropy.raw_width(alphabet)),
                 "huffman": len(huffman.encode(sym, alphabet)), "ans": len(ans.encode(sym, alphabet))}
        assert len(st.payload) == min(sizes.values())
        assert sizes[st.coder] == len(st.payload)


@pytest.mark.parametrize("coder", CODERS)
def test_garbage_payloads_raise_corrupt_only(coder):
    mod = CODERS[coder]
    rng = np.random.default_rng(6)
    for trial in range(300):
        payload = rng.integers(0, 256, rng.integers(0, 40)).astype(np.uint8).tobytes()
        try:
            out = mod.decode(payload, int(rng.integers(1, 50)), 16)
        except Corrupt:
            continue
        assert out.dtype == np.uint8 and int(out.max()) < 16


def test_huffman_rejects_incomplete_code_table():
    # lengths 1,2 for two symbols leave a hole in the code space (Kraft sum 3/4)
    payload = bytes([1, 0x12]) + b"\x00"
    with pytest.raises(Corrupt, match="prefix code"):
        huffman.decode(payload, 3, 2)


@pytest.mark.parametrize("n", [10_000, 30_000])  # serial and lockstep decoders
def test_huffman_chunk_table_is_checked(n):
    sym = skewed(n, 16, seed=8)
    payload = bytearray(huffman.encode(sym, 16))
    tsize = 1 + (payload[0] + 2) // 2
    payload[tsize] ^= 1  # first chunk's bit length off by one
    with pytest.raises(Corrupt, match="chunk"):
        huffman.decode(bytes(payload), n, 16)
    with pytest.raises(Corrupt):
        huffman.decode(bytes(payload[:-1]), n, 16)
