"""schemathesis against the server's own OpenAPI document: no 5xx, no schema violations.

Bounded (``MAX_EXAMPLES`` per operation) so it fits CI. KServe's model load/unload operations
are excluded: unloading would take the shared server's models away from the other tests.
schemathesis' pytest plugin does not run under pytest 9, so each operation's hypothesis
strategy is driven here directly.
"""

from __future__ import annotations

import re

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 25
EXCLUDED = re.compile(r"/(un)?load$")
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


def test_api_conforms(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures, tested = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if EXCLUDED.search(operation.path):
            continue
        tested.append(operation.label)

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert any("/v1/embeddings" in label for label in tested), tested
    assert not failures, "\n\n".join(failures)
