"""Offline validation of Kubernetes objects: the Helm chart's output and manifests/.

No cluster: core kinds are checked with ``kubernetes_validate`` (bundled OpenAPI schemas,
strict: unknown fields rejected), KServe kinds against the CustomResourceDefinitions in
``tests/k8s/crds/kserve`` (KServe's own files; ``SOURCE.md`` there names the KServe ref and
``hack/refresh-kserve-crds.sh`` refreshes them) made strict the same way, Prometheus Operator
kinds structurally.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "bge-predictor"
MANIFESTS_DIR = REPO / "manifests"

#: Release name and namespace the chart is rendered with.
RELEASE = "rel"
NAMESPACE = "ml"

#: Kubernetes version whose bundled schemas validate core kinds.
K8S_VERSION = "1.33"

KSERVE_GROUP = "serving.kserve.io"
MONITORING_GROUP = "monitoring.coreos.com"

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

Obj = dict[str, Any]

# libyaml's loader when PyYAML has it: the KServe CRDs are megabytes of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: KServe's CRDs, kept in the repository (see SOURCE.md beside them).
CRDS_DIR = Path(__file__).resolve().parent / "crds"


def schemas_dir() -> Path:
    """Folder holding ``kserve/``: $K8S_SCHEMAS_DIR (to try other CRDs), else the repo's own."""
    env = os.environ.get("K8S_SCHEMAS_DIR")
    return Path(env) if env else CRDS_DIR


# --- YAML ---------------------------------------------------------------------------------


def load_documents(text: str) -> list[Obj]:
    """Every non-empty YAML document in ``text``; each must be a mapping."""
    docs = []
    for doc in yaml.load_all(text, Loader=_LOADER):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise AssertionError(f"YAML document is not a mapping: {doc!r:.200}")
        docs.append(doc)
    return docs


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS_DIR.rglob("*") if p.suffix in (".yaml", ".yml"))


# --- KServe CRDs --------------------------------------------------------------------------


def strictify(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema that rejects unknown fields.

    Every object schema that lists ``properties`` and says nothing about extra keys (no
    ``additionalProperties``, no ``x-kubernetes-preserve-unknown-fields``) gets
    ``additionalProperties: false``, the way the API server prunes and strict field validation
    rejects.
    """
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {k: strictify(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = strictify(value)
        else:
            out[key] = copy.deepcopy(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class CrdValidators:
    """jsonschema validators keyed by (apiVersion, kind), built from CRD files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._validators: dict[tuple[str, str], Any] = {}
        files = sorted(directory.rglob("*.yaml"))
        if not files:
            raise FileNotFoundError(f"no CRD files under {directory}")
        for path in files:
            for crd in load_documents(path.read_text()):
                if crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = strictify(version["schema"]["openAPIV3Schema"])
                    cls = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
                    cls.check_schema(schema)
                    self._validators[(f"{group}/{version['name']}", kind)] = cls(schema)

    def kinds(self) -> set[tuple[str, str]]:
        return set(self._validators)

    def validate(self, obj: Obj) -> None:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key not in self._validators:
            raise AssertionError(
                f"no CRD schema for {key} in {self.directory} (have {sorted(self._validators)})"
            )
        errors = sorted(self._validators[key].iter_errors(obj), key=lambda e: str(list(e.path)))
        if errors:
            lines = [f"{_path(e)}: {e.message}" for e in errors]
            raise AssertionError(f"{describe(obj)} fails its CRD schema:\n  " + "\n  ".join(lines))


def _path(error: jsonschema.ValidationError) -> str:
    return "/".join(map(str, error.absolute_path)) or "<root>"


# --- metadata and Prometheus Operator kinds -----------------------------------------------


def describe(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _check_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert not prefix or (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix)), key
    assert 0 < len(name) <= 63 and LABEL_NAME.match(name), f"bad label/annotation key {key!r}"


def validate_metadata(obj: Obj) -> None:
    """What the API server checks in metadata for kinds whose schema leaves it open (CRDs)."""
    meta = obj.get("metadata")
    assert isinstance(meta, dict), f"{describe(obj)}: metadata missing"
    name = meta.get("name")
    assert isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.match(name), (
        f"{describe(obj)}: bad name {name!r}"
    )
    allowed = {"name", "namespace", "labels", "annotations", "generateName", "finalizers"}
    unknown = set(meta) - allowed
    assert not unknown, f"{describe(obj)}: unexpected metadata fields {unknown}"
    for key, value in (meta.get("labels") or {}).items():
        _check_label_key(key)
        assert isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value), (
            f"{describe(obj)}: bad label value {key}={value!r}"
        )
    for key, value in (meta.get("annotations") or {}).items():
        _check_label_key(key)
        assert isinstance(value, str), f"{describe(obj)}: annotation {key} is not a string"


_SELECTOR_KEYS = {"matchLabels", "matchExpressions"}
_ENDPOINT_KEYS = {
    "port", "portNumber", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "params",
    "bearerTokenSecret", "authorization", "basicAuth", "tlsConfig", "followRedirects",
    "enableHttp2", "filterRunning", "proxyUrl", "oauth2",
}
_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                       r"(([0-9]+)s)?(([0-9]+)ms)?)$")


def _check_selector(selector: Any, where: str) -> None:
    assert isinstance(selector, dict) and selector, f"{where}: selector must be a non-empty map"
    assert set(selector) <= _SELECTOR_KEYS, f"{where}: unknown selector keys {set(selector)}"
    for key, value in (selector.get("matchLabels") or {}).items():
        _check_label_key(key)
        assert isinstance(value, str), f"{where}: matchLabels values are strings"
    for expr in selector.get("matchExpressions") or []:
        assert set(expr) <= {"key", "operator", "values"}, f"{where}: bad expression {expr}"
        assert expr["operator"] in ("In", "NotIn", "Exists", "DoesNotExist"), where
        if expr["operator"] in ("In", "NotIn"):
            assert expr.get("values") and all(isinstance(v, str) for v in expr["values"]), where


def validate_monitoring(obj: Obj) -> None:
    """Structural check of ServiceMonitor / PodMonitor (monitoring.coreos.com/v1)."""
    where = describe(obj)
    assert obj["apiVersion"] == f"{MONITORING_GROUP}/v1", where
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}, f"{where}: unknown top keys"
    spec = obj.get("spec")
    assert isinstance(spec, dict), f"{where}: spec missing"
    if obj["kind"] == "ServiceMonitor":
        endpoints_key = "endpoints"
        allowed = {"endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels",
                   "podTargetLabels", "sampleLimit", "scrapeProtocols", "attachMetadata"}
    elif obj["kind"] == "PodMonitor":
        endpoints_key = "podMetricsEndpoints"
        allowed = {"podMetricsEndpoints", "selector", "namespaceSelector", "jobLabel",
                   "podTargetLabels", "sampleLimit", "scrapeProtocols", "attachMetadata"}
    else:
        raise AssertionError(f"{where}: unsupported monitoring kind")
    assert set(spec) <= allowed, f"{where}: unknown spec fields {set(spec) - allowed}"
    _check_selector(spec.get("selector"), where)
    ns = spec.get("namespaceSelector")
    if ns is not None:
        assert set(ns) <= {"any", "matchNames"}, f"{where}: bad namespaceSelector"
    endpoints = spec.get(endpoints_key)
    assert isinstance(endpoints, list) and endpoints, f"{where}: {endpoints_key} empty"
    for ep in endpoints:
        assert isinstance(ep, dict) and set(ep) <= _ENDPOINT_KEYS, f"{where}: bad endpoint {ep}"
        assert "port" in ep or "portNumber" in ep or "targetPort" in ep, f"{where}: no port"
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                assert _DURATION.match(str(ep[key])), f"{where}: bad {key} {ep[key]!r}"
        if "scheme" in ep:
            assert ep["scheme"] in ("http", "https"), where


# --- dispatch -----------------------------------------------------------------------------


def validate_object(obj: Obj, crds: CrdValidators) -> str:
    """Validate one object; returns which validator checked it."""
    assert isinstance(obj.get("apiVersion"), str) and isinstance(obj.get("kind"), str), (
        f"object without apiVersion/kind: {obj!r:.200}"
    )
    group = obj["apiVersion"].rpartition("/")[0]
    if group == KSERVE_GROUP:
        validate_metadata(obj)
        crds.validate(obj)
        if obj["kind"] == "InferenceService":
            name = obj["metadata"]["name"]
            # KServe's webhook: DNS-1035 label (it prefixes Services and hostnames with it).
            assert DNS1035_LABEL.match(name) and len(name) <= 63, f"bad isvc name {name!r}"
        return "crd"
    if group == MONITORING_GROUP:
        validate_metadata(obj)
        validate_monitoring(obj)
        return "structural"
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(f"{describe(obj)} invalid at {_path(err)}: {err.message}") from None
    except kubernetes_validate.SchemaNotFoundError as err:
        raise AssertionError(err.message) from None
    return "kubernetes"


# --- helpers over objects -----------------------------------------------------------------


def by_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Label selector semantics (matchLabels + matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_strings(v)


def flag_value(args: list[str], flag: str) -> str | None:
    """Value of ``--flag=value`` or ``--flag value``; the last occurrence wins, as argparse."""
    found = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(flag + "="):
            found = arg.split("=", 1)[1]
    return found


def env_map(env: list[Obj] | None) -> dict[str, Obj]:
    return {e["name"]: e for e in env or []}


def resolve_port(port: int | str, container: Obj) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"named port {port!r} not declared by container {container.get('name')}")
