"""KServe adapter: thin ``kserve.Model`` wrappers around the core services, the V1/V2 tensor
codecs (one per task, the same shape), V2 REST rendering and the guarded gRPC server."""
