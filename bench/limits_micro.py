"""``python -m bench.limits_micro``: what issue 11's bounds cost on the normal path, measured in
one process, old and new interleaved (best of 7 rounds of CPU time, so other load on the
machine does not decide the ratio).

- rerank tokenising: the pair-at-a-time tokenisation before (query tokenised per document) and
  ``Reranker._pairs`` now (query and documents once each, limits checked on the counts);
  asserts both give the same ids;
- response rendering: ``/v1/embeddings`` bodies (``NumpyJSONResponse``) and V2 JSON (KServe's
  ``to_rest`` + pydantic, against ours).
"""

from __future__ import annotations

import argparse
import random
import time
import types

import numpy as np
import orjson


def best_of(fns: dict, repeat: int, rounds: int = 7) -> dict[str, float]:
    best = dict.fromkeys(fns, float("inf"))
    for rnd in range(rounds):
        for label in (list(fns) if rnd % 2 else list(fns)[::-1]):
            started = time.process_time()
            for _ in range(repeat):
                fns[label]()
            best[label] = min(best[label], (time.process_time() - started) / repeat)
    return best


def show(name: str, best: dict[str, float]) -> None:
    print(f"{name}: old {best['old'] * 1e3:.3f} ms, new {best['new'] * 1e3:.3f} ms CPU, "
          f"new/old {best['new'] / best['old']:.2f}", flush=True)


def rerank(reranker_dir: str) -> None:
    from transformers import AutoTokenizer

    from predictor.core.reranker import PairTemplate, Reranker

    tok = AutoTokenizer.from_pretrained(reranker_dir)
    rng = random.Random(0)
    words = ("the a of model query document search rank paris france capital city river "
             "data token").split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    def old_pairs(queries, documents):
        encoded = tok(queries * len(documents), documents, truncation=False,
                      add_special_tokens=True, return_attention_mask=False,
                      return_token_type_ids=False, verbose=False)
        pairs = []
        for i, ids in enumerate(encoded["input_ids"]):
            seq = encoded.sequence_ids(i)
            seq.index(1), len(seq) - seq[::-1].index(1)  # where the document lies
            pairs.append(ids)
        return pairs

    model = types.SimpleNamespace(template=PairTemplate(tok), settings=types.SimpleNamespace(
        max_request_tokens=1 << 20))

    def new_pairs(queries, documents):
        return Reranker._pairs(model, queries, documents, 8192, None, True, "query",
                                    "documents")[0]

    for name, docs in (("rerank 4 x 14 tokens", 4 * [14]), ("rerank 2 x 480 tokens", 2 * [480]),
                       ("rerank 100 x 200 tokens", 100 * [200])):
        query, documents = [text(12)], [text(n) for n in docs]
        assert old_pairs(query, documents) == new_pairs(query, documents)
        show(name, best_of({"old": lambda q=query, d=documents: old_pairs(q, d),
                            "new": lambda q=query, d=documents: new_pairs(q, d)}, 50))


def rendering() -> None:
    from kserve.protocol.infer_type import InferOutput, InferResponse
    from kserve.protocol.rest.v2_datamodels import InferenceResponse

    from predictor.api.http.responses import NumpyJSONResponse
    from predictor.api.kserve.rest import _v2_json

    rng = np.random.default_rng(0)
    dense = np.stack([rng.standard_normal(1024).astype(np.float32) for _ in range(4)])
    body = {"object": "list", "model": "bge-m3",
            "data": [{"object": "embedding", "index": i, "embedding": d}
                     for i, d in enumerate(dense)]}
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    show("/v1/embeddings body, 4 x 1024 dense", best_of(
        {"old": lambda: orjson.dumps(body, option=option),
         "new": lambda: NumpyJSONResponse(body).body}, 2000))

    def response():
        out = InferOutput(name="dense", shape=[4, 1024], datatype="FP32")
        out.data = dense
        return InferResponse(response_id="x", model_name="bge-m3", infer_outputs=[out],
                             parameters={"prompt_tokens": 60})

    def old_v2():
        rest, _ = response().to_rest()
        return orjson.dumps(InferenceResponse.model_validate(rest).model_dump(mode="json"))

    def new_v2():
        r = response()
        return _v2_json(r, r.outputs)

    show("V2 JSON body, 4 x 1024 dense", best_of({"old": old_v2, "new": new_v2}, 200))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reranker", help="cross-encoder directory (default: the bench's small "
                                      "model, built on first use)")
    args = p.parse_args()
    if args.reranker is None:
        from .models import SHAPES, ensure_models

        args.reranker = str(ensure_models(SHAPES["small"])[1])
    rerank(args.reranker)
    rendering()


if __name__ == "__main__":
    main()
