"""KServe ``Model`` subclasses: load a runner, own an engine, speak V1/V2."""
