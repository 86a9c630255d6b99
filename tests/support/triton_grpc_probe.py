"""Runs tritonclient gRPC calls in a process of their own and prints the results as JSON.

tritonclient's ``grpc_service.proto`` and KServe's ``grpc_predict_v2.proto`` define the same
``inference.*`` messages; protobuf refuses to load both into one process. The tests import KServe,
so they drive tritonclient.grpc through this script: a list of calls on stdin, one result each
on stdout.
"""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def _bytes(value: str) -> bytes:
    return base64.b64decode(value[4:]) if value.startswith("b64:") else value.encode("utf-8")


def run(call: dict) -> dict:
    client = grpcclient.InferenceServerClient(url=call["url"])
    if call.get("op") == "ready":
        return {"ready": client.is_model_ready(call["model"])}
    inputs = []
    for spec in call["inputs"]:
        tensor = grpcclient.InferInput(spec["name"], [len(spec["data"])], "BYTES")
        tensor.set_data_from_numpy(np.array([_bytes(v) for v in spec["data"]], dtype=object))
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(n) for n in call.get("outputs", [])] or None
    try:
        result = client.infer(call["model"], inputs, outputs=outputs,
                              parameters=call.get("parameters"), headers=call.get("headers"))
    except InferenceServerException as exc:
        return {"error": {"status": exc.status(), "message": exc.message()}}
    response = result.get_response(as_json=True)
    out = {}
    for tensor in response["outputs"]:
        arr = result.as_numpy(tensor["name"])
        out[tensor["name"]] = {"dtype": str(arr.dtype), "shape": list(arr.shape),
                               "data": arr.reshape(-1).tolist()}
    return {"outputs": out}


if __name__ == "__main__":
    print(json.dumps([run(call) for call in json.load(sys.stdin)]))
