"""The JOSE primitives: strict decoding, known answers from the RFCs, and key-shape refusals."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from gateway.core import jose
from gateway.errors import RemoteError
from tests.envelope_forge import SeededRand

# ------------------------------------------------------------------ base64url (RFC 4648 §5)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(256))])
def test_b64u_round_trips_without_padding(data: bytes) -> None:
    text = jose.b64u_encode(data)
    assert "=" not in text
    assert jose.b64u_decode(text) == data
    assert jose.b64u_decode(text.encode("ascii")) == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("YQ==", "padding is not base64url-without-padding"),
        ("Y Q", "whitespace is silently dropped by Python's decoder"),
        ("YQ\n", "a trailing newline"),
        ("YQ+/", "the standard alphabet, not the URL-safe one"),
        ("Y", "no byte string encodes to 1 mod 4 characters"),
        ("YR", "non-zero unused bits in the last character (canonical is YQ)"),
        ("YWJ", "non-zero unused bits after two bytes (canonical is YWI)"),
        ("éé", "non-ASCII"),
    ],
)
def test_b64u_refuses_non_canonical_text(text: str, why: str) -> None:
    with pytest.raises(RemoteError) as caught:
        jose.b64u_decode(text)
    assert caught.value.reason == "malformed", why


# ------------------------------------------------------------------ JSON (RFC 8259, RFC 7515 §5.2)


def test_json_object_parses() -> None:
    assert jose.parse_json_object(b'{"a":[1,{"b":null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',  # duplicate member at the top
        b'{"a":{"b":1,"b":1}}',  # duplicate member nested, even with equal values
        b'{"a":[{"x":1,"x":2}]}',  # duplicate member inside an array
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"[1,2]",  # top level not an object
        b'"string"',
        b"",
        b'{"a":1',
        b'\xef\xbb\xbf{"a":1}',  # UTF-8 byte order mark
        b'{"a":"\xff"}',  # not UTF-8
        '{"a":1}'.encode("utf-16"),  # json.loads(bytes) would auto-detect UTF-16
        b'{"a":' + b"1" * 5000 + b"}",  # beyond Python's integer digit limit
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # exhausts the recursion limit
    ],
    ids=lambda t: repr(t[:24]),
)
def test_json_refuses_ambiguous_or_broken_text(text: bytes) -> None:
    with pytest.raises(RemoteError) as caught:
        jose.parse_json_object(text)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":"\xc3\xa9","b":[1,-2,true,false,null],"c":{"d":"\\\\"}}',  # fast path
        b'{"a": 1, "b": [1, 2]}',  # whitespace: the strict decoder decides
        b'{"a":"\\u00e9"}',  # an escape orjson would not write
        b'{"a":18446744073709551616}',  # beyond 64 bits: a float to orjson, an int to json
        b'{"a":1e5,"b":-0}',  # numbers orjson writes another way
        b'{"a":"\\ud800"}',  # a lone surrogate: orjson refuses, json accepts
    ],
)
def test_json_fast_path_agrees_with_the_strict_decoder(text: bytes) -> None:
    assert jose.parse_json_object(text) == json.loads(text)


def test_json_dumps_is_compact_utf8() -> None:
    assert jose.json_dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"s": "".join(map(chr, range(0x80))) + "\u2028\u00e9\U0001f600"},  # every escape rule
        {"n": [0, -1, 2**63 - 1, 2**64 - 1, True, None], "o": {"k": []}},
        {"big": 10**20},  # beyond orjson: written by json
        {1: "non-string member name"},  # likewise
    ],
)
def test_json_dumps_writes_what_json_dumps_writes(value: dict[Any, Any]) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert jose.json_dumps(value) == expected


def test_json_dumps_holds_no_more_memory_than_its_bytes() -> None:
    # orjson leaves its output in an over-allocated buffer (a 5 KB envelope held 32 KiB), and a
    # node keeps envelopes in memory while they wait to be published: each must hold its size.
    value = {"ciphertext": "x" * 5000, "recipients": [{"header": {"kid": "k" * 43}}]}
    size = len(jose.json_dumps(value))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [jose.json_dumps(value) for _ in range(50)]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert held < size * 1.2


# ------------------------------------------------------------------ thumbprints (RFC 7638)


def test_thumbprint_matches_rfc8037_a3() -> None:
    # RFC 8037 Appendix A.3: the thumbprint of the Ed25519 example key.
    key = jose.public_key_from_jwk(
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    )
    assert jose.thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_of_p256_uses_the_rfc7638_member_order() -> None:
    key = jose.derive_p256(SeededRand("tp")).public_key()
    jwk = jose.public_jwk(key)
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"),
    ).encode()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical)
    assert jose.thumbprint(key) == jose.b64u_encode(digest.finalize())


# ------------------------------------------------------------------ signatures


def test_ed25519_signature_matches_rfc8037_a4() -> None:
    # RFC 8037 Appendix A.4: Ed25519 is deterministic, so the JWS signature is a known answer.
    private = jose.private_key_from_jwk(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        }
    )
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    signing_input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    expected = (
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    )
    assert jose.b64u_encode(jose.ed25519_sign(private, signing_input)) == expected
    assert jose.ed25519_verify(private.public_key(), jose.b64u_decode(expected), signing_input)


def test_es256_signature_is_raw_r_s_and_deterministic() -> None:
    key = jose.derive_p256(SeededRand("es256"))
    sig = jose.es256_sign(key, b"data")
    assert len(sig) == 64
    assert sig == jose.es256_sign(key, b"data")  # RFC 6979
    assert jose.es256_verify(key.public_key(), sig, b"data")
    assert not jose.es256_verify(key.public_key(), sig, b"other")


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00" * 64, b"\x00" * 63, b"\x30" * 72],
    ids=["empty", "r=s=0", "short", "der-length"],
)
def test_es256_refuses_malformed_signatures(signature: bytes) -> None:
    key = jose.derive_p256(SeededRand("es256"))
    assert not jose.es256_verify(key.public_key(), signature, b"data")


def test_ed25519_refuses_a_short_signature() -> None:
    key = jose.derive_ed25519(SeededRand("ed"))
    assert not jose.ed25519_verify(key.public_key(), jose.ed25519_sign(key, b"d")[:63], b"d")


# ------------------------------------------------------------------ ECDH-ES (RFC 7518 §4.6)


def test_concat_kdf_matches_cryptography_concatkdf() -> None:
    z = bytes(range(32))
    other_info = (
        len(b"ECDH-ES+A256KW").to_bytes(4, "big")
        + b"ECDH-ES+A256KW"
        + (0).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + (256).to_bytes(4, "big")
    )
    expected = ConcatKDFHash(hashes.SHA256(), 32, other_info).derive(z)
    assert jose.concat_kdf_a256kw(z) == expected


def test_aes_key_wrap_matches_rfc3394_4_6() -> None:
    # RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK.
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
    wrapped = bytes.fromhex(
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    )
    assert jose.a256kw_wrap(kek, key) == wrapped
    assert jose.a256kw_unwrap(kek, wrapped) == key


def test_key_unwrap_with_the_wrong_kek_is_undecryptable() -> None:
    wrapped = jose.a256kw_wrap(b"\x01" * 32, b"\x02" * 32)
    with pytest.raises(RemoteError) as caught:
        jose.a256kw_unwrap(b"\x03" * 32, wrapped)
    assert caught.value.reason == "undecryptable"


@pytest.mark.parametrize(
    "point",
    [
        "00" * 32,  # the zero point
        "01" + "00" * 31,  # the point of order 1
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  # order 8
    ],
)
def test_x25519_low_order_points_are_refused(point: str) -> None:
    own = jose.derive_x25519(SeededRand("x"))
    peer = x25519.X25519PublicKey.from_public_bytes(bytes.fromhex(point))
    with pytest.raises(RemoteError) as caught:
        jose.ecdh(own, peer)
    assert caught.value.reason == "undecryptable"


def test_ecdh_across_curves_is_refused() -> None:
    with pytest.raises(RemoteError) as caught:
        jose.ecdh(
            jose.derive_x25519(SeededRand("x")), jose.derive_p256(SeededRand("p")).public_key()
        )
    assert caught.value.reason == "undecryptable"


def test_ecdh_agrees_both_ways() -> None:
    a, b = jose.derive_p256(SeededRand("a")), jose.derive_p256(SeededRand("b"))
    assert jose.ecdh(a, b.public_key()) == jose.ecdh(b, a.public_key())


def test_a256gcm_refuses_a_flipped_tag_bit() -> None:
    ct, tag = jose.a256gcm_encrypt(b"k" * 32, b"i" * 12, b"plaintext", b"aad")
    assert jose.a256gcm_decrypt(b"k" * 32, b"i" * 12, ct, tag, b"aad") == b"plaintext"
    with pytest.raises(RemoteError) as caught:
        jose.a256gcm_decrypt(b"k" * 32, b"i" * 12, ct, bytes([tag[0] ^ 1]) + tag[1:], b"aad")
    assert caught.value.reason == "undecryptable"


# ------------------------------------------------------------------ JWK shapes (RFC 7518, RFC 8037)


def _p256_jwk() -> dict[str, str]:
    return jose.public_jwk(jose.derive_p256(SeededRand("jwk")).public_key())


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "unsupported"),
        ({"kty": "oct", "k": "AAAA"}, "unsupported"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, "unsupported"),
        ({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}, "unsupported"),
        ({"kty": "OKP", "crv": "Ed448", "x": "AA"}, "unsupported"),
        ({"kty": "OKP", "crv": "X448", "x": "AA"}, "unsupported"),
        ({"kty": "OKP", "crv": "P-256", "x": "AA"}, "unsupported"),
        ({"kty": "EC", "crv": "P-256"}, "malformed"),
        ({"kty": 1, "crv": "P-256"}, "malformed"),
        ({"kty": "OKP", "crv": "X25519", "x": "AAAA"}, "malformed"),  # 3 bytes, not 32
    ],
)
def test_public_jwk_outside_the_profile_is_refused(jwk: dict[str, object], reason: str) -> None:
    with pytest.raises(RemoteError) as caught:
        jose.public_key_from_jwk(jwk)
    assert caught.value.reason == reason


def test_public_jwk_with_extra_members_is_refused() -> None:
    jwk = {**_p256_jwk(), "d": "AAAA"}
    with pytest.raises(RemoteError) as caught:
        jose.public_key_from_jwk(jwk)
    assert caught.value.reason == "malformed"


def test_p256_point_off_the_curve_is_refused() -> None:
    jwk = _p256_jwk()
    y = bytearray(jose.b64u_decode(jwk["y"]))
    y[-1] ^= 1
    with pytest.raises(RemoteError) as caught:
        jose.public_key_from_jwk({**jwk, "y": jose.b64u_encode(bytes(y))})
    assert caught.value.reason == "undecryptable"


def test_private_jwk_round_trips_and_must_match_its_public_part() -> None:
    for key in (
        jose.derive_p256(SeededRand("1")),
        jose.derive_x25519(SeededRand("2")),
        jose.derive_ed25519(SeededRand("3")),
    ):
        jwk = jose.private_jwk(key)
        back = jose.private_key_from_jwk(jwk)
        assert jose.public_jwk(back.public_key()) == jose.public_jwk(key.public_key())
        other = jose.public_jwk(jose.derive_p256(SeededRand("other")).public_key())
        with pytest.raises(RemoteError):
            jose.private_key_from_jwk(
                {**other, "d": jwk["d"]} if "y" in jwk else {**jwk, "x": other["x"]}
            )


def test_p256_private_scalar_out_of_range_is_refused() -> None:
    jwk = {**_p256_jwk(), "d": jose.b64u_encode(b"\xff" * 32)}
    with pytest.raises(RemoteError):
        jose.private_key_from_jwk(jwk)


def test_derived_p256_keys_are_in_range_and_reproducible() -> None:
    key = jose.derive_p256(SeededRand("seed"))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert (
        0
        < key.private_numbers().private_value
        < int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
    )
    assert jose.private_jwk(key) == jose.private_jwk(jose.derive_p256(SeededRand("seed")))
    zero = jose.derive_p256(lambda n: b"\x00" * n)  # c = 0 still gives d = 1, never 0
    assert zero.private_numbers().private_value == 1
