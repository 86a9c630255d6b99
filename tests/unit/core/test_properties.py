"""Property tests (hypothesis): sparse CSR and hash mapping, lexical pooling, base64, validation."""

from __future__ import annotations

import base64
from collections import defaultdict

import numpy as np
import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from predictor.api.http.embeddings.protocol import EmbeddingsRequest
from predictor.api.http.embeddings.serving import b64_array
from predictor.api.params import as_bool, as_int
from predictor.core.limits import validate_texts
from predictor.core.sparse import hash_token, to_csr, to_hash_space
from predictor.core.types import SparseVector
from predictor.errors import BadRequestError
from predictor.runtime.m3 import M3Runner

weights = st.floats(min_value=0.0009765625, max_value=10, allow_nan=False, width=32)


@st.composite
def sparse_vectors(draw, max_len=20):
    ids = draw(st.lists(st.integers(0, 5000), max_size=max_len, unique=True))
    ids.sort()
    values = draw(st.lists(weights, min_size=len(ids), max_size=len(ids)))
    return SparseVector(np.asarray(ids, dtype=np.int64), np.asarray(values, dtype=np.float32))


@given(st.lists(sparse_vectors(), max_size=8))
def test_csr_rows_round_trip(vectors):
    indices, values, offsets = to_csr(vectors)
    assert offsets[0] == 0 and offsets[-1] == len(indices) == len(values)
    assert np.all(np.diff(offsets) >= 0) and len(offsets) == len(vectors) + 1
    for i, vec in enumerate(vectors):
        row = slice(offsets[i], offsets[i + 1])
        np.testing.assert_array_equal(indices[row], vec.indices)
        np.testing.assert_array_equal(values[row], vec.values)
    assert indices.dtype == np.int64 and values.dtype == np.float32 and offsets.dtype == np.int64


@given(st.lists(st.tuples(st.text(min_size=1, max_size=6), weights), max_size=30),
       st.integers(1, 64))
def test_hash_mapping_keeps_the_max_of_colliding_tokens(tokens_weights, space):
    tokens = [t for t, _ in tokens_weights]
    vec = SparseVector(np.arange(len(tokens), dtype=np.int64),
                       np.asarray([w for _, w in tokens_weights], dtype=np.float32))
    mapped = to_hash_space(vec, tokens, space)
    expected: dict[int, float] = defaultdict(float)
    for token, weight in zip(tokens, vec.values, strict=True):
        key = hash_token(token, space)
        expected[key] = max(expected[key], float(weight))
    assert list(mapped.indices) == sorted(expected)
    assert all(0 <= i < space for i in mapped.indices)
    np.testing.assert_array_equal(mapped.values,
                                  np.asarray([expected[k] for k in sorted(expected)], np.float32))


def test_hash_is_sha256_big_endian_modulo():
    import hashlib

    digest = hashlib.sha256(b"hello").digest()
    assert hash_token("hello", 1 << 20) == int.from_bytes(digest[:8], "big") % (1 << 20)


class _Pooler:
    """Just what ``M3Runner._lexical_weights`` needs."""

    unused_token_ids = np.array([0, 1, 2, 3], dtype=np.int64)
    _lexical_weights = M3Runner._lexical_weights


@given(st.lists(st.tuples(st.integers(0, 40), st.floats(-2, 2, allow_nan=False, width=32)),
                max_size=60))
def test_lexical_weights_match_flagembedding_rule(pairs):
    """Special tokens and non-positive weights dropped; repeated ids keep their max weight."""
    ids = np.asarray([i for i, _ in pairs], dtype=np.int64)
    w = np.asarray([x for _, x in pairs], dtype=np.float32)
    vec = _Pooler()._lexical_weights(ids, w)
    reference: dict[int, float] = {}
    for token, weight in zip(ids.tolist(), w.tolist(), strict=True):
        if token not in (0, 1, 2, 3) and weight > 0 and weight > reference.get(token, 0):
            reference[token] = weight
    assert vec.indices.tolist() == sorted(reference)
    np.testing.assert_array_equal(vec.values, np.asarray([reference[k] for k in sorted(reference)],
                                                         dtype=np.float32))


@given(arrays(np.float32, st.integers(0, 64), elements=st.floats(-1e6, 1e6, width=32)))
def test_base64_round_trip(vector):
    decoded = np.frombuffer(base64.b64decode(b64_array(vector, "float32")), dtype="<f4")
    np.testing.assert_array_equal(decoded, vector)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5),
                                                                       children, max_size=4),
    max_leaves=12)


@given(json_values)
def test_validate_texts_accepts_only_non_empty_strings(value):
    try:
        texts = validate_texts(value, "input", 16)
    except BadRequestError as exc:
        assert exc.param is not None and exc.status_code == 400
        return
    assert texts and all(isinstance(t, str) and t.strip() for t in texts)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["input", "model", "encoding_format", "dimensions",
                                        "return_dense", "return_sparse", "truncate",
                                        "max_length", "user", "extra"]), json_values))
def test_request_schema_fails_only_with_validation_errors(body):
    try:
        req = EmbeddingsRequest.model_validate(body)
    except pydantic.ValidationError:
        return
    assert isinstance(req.input, str | list)
    assert req.encoding_format in ("float", "base64")


@given(json_values)
def test_parameter_parsing_is_total(value):
    for parse in (as_bool, as_int):
        try:
            parse(value, "p")
        except BadRequestError as exc:
            assert exc.param == "p"
