"""A real kube-apiserver with etcd on 127.0.0.1, for server-side-apply checks of what we ship.

``LiveApiServer`` starts Debian's ``etcd`` and a ``kube-apiserver`` binary on free loopback ports
in a temporary folder, waits (bounded) for ``/healthz``, and talks to it over HTTPS with a static
bearer token. Nothing runs the objects (no scheduler, controllers or kubelet): the server
validates, defaults, prunes and stores them, which is what the tests want to see.

Where the binary comes from: ``$KUBE_APISERVER_BIN``, else ``<repo>/../shared/k8s-bin/
kube-apiserver`` (CI puts one there), else ``kube-apiserver`` on PATH. ``find_binaries`` says why
not when one is missing, so the test can skip with that reason.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_BIN = REPO.parent / "shared" / "k8s-bin" / "kube-apiserver"
START_TIMEOUT_S = 120.0

Obj = dict[str, Any]


def find_binaries() -> tuple[str | None, str | None, str]:
    """(kube-apiserver, etcd, reason when either is missing)."""
    apiserver = os.environ.get("KUBE_APISERVER_BIN")
    if apiserver and not os.access(apiserver, os.X_OK):
        return None, None, f"KUBE_APISERVER_BIN={apiserver} is not an executable file"
    if not apiserver and os.access(SHARED_BIN, os.X_OK):
        apiserver = str(SHARED_BIN)
    apiserver = apiserver or shutil.which("kube-apiserver")
    if not apiserver:
        return None, None, (
            "no kube-apiserver: set KUBE_APISERVER_BIN, or put one at ../shared/k8s-bin/ "
            "(CI does), to run the live API-server checks"
        )
    etcd = os.environ.get("ETCD_BIN") or shutil.which("etcd")
    if not etcd:
        return apiserver, None, "no etcd on PATH (apt-get install etcd-server) or ETCD_BIN"
    if not shutil.which("openssl"):
        return apiserver, None, "no openssl on PATH (it makes the service-account key)"
    return apiserver, etcd, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- what a 1.20 API server needs that a current one does not ------------------------------


def adapt_for_1_20(obj: Obj) -> Obj:
    """A copy of ``obj`` a v1.20 API server accepts, changing only what 1.20 lacks.

    - autoscaling/v2 and policy/v1 came in 1.23 / 1.21: send HPAs as autoscaling/v2beta2 and
      PDBs as policy/v1beta1 (same fields).
    - Its server-side apply wants resource quantities as strings (``nvidia.com/gpu: 1`` fails
      with "cannot convert int64 to string").
    - It wants every container/Service port's ``protocol`` spelled out (the merge key).
    """
    out = copy.deepcopy(obj)
    versions = {
        ("autoscaling/v2", "HorizontalPodAutoscaler"): "autoscaling/v2beta2",
        ("policy/v1", "PodDisruptionBudget"): "policy/v1beta1",
    }
    out["apiVersion"] = versions.get((out["apiVersion"], out["kind"]), out["apiVersion"])

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in ("limits", "requests") and isinstance(inner, dict):
                    for name, quantity in inner.items():
                        if isinstance(quantity, (int, float)) and not isinstance(quantity, bool):
                            inner[name] = str(quantity)
                if key == "ports" and isinstance(inner, list):
                    for port in inner:
                        if isinstance(port, dict) and (
                            "containerPort" in port or "port" in port
                        ):
                            port.setdefault("protocol", "TCP")
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(out)
    return out


def crd_for_1_20(crd: Obj) -> Obj:
    """A KServe CRD a 1.20 server installs: it reads ``default: ""`` as null and refuses it."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v) for k, v in value.items() if not (k == "default" and v == "")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(crd)


# --- the server ---------------------------------------------------------------------------


class ApplyError(AssertionError):
    """The API server refused an object."""


class LiveApiServer:
    """etcd + kube-apiserver on loopback; ``apply`` server-side-applies one object."""

    def __init__(self, apiserver: str, etcd: str) -> None:
        self.apiserver_bin, self.etcd_bin = apiserver, etcd
        self.dir = Path(tempfile.mkdtemp(prefix="bge-apiserver-"))
        self.token = secrets.token_hex(16)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""
        # verify=False: the serving certificate is self-signed, and this is loopback.
        self.session = httpx.Client(verify=False, timeout=60,
                                    headers={"Authorization": f"Bearer {self.token}"})
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    # lifecycle

    def start(self) -> LiveApiServer:
        d = self.dir
        client, peer, secure = _free_port(), _free_port(), _free_port()
        self._spawn("etcd", [
            self.etcd_bin, "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
        ])
        subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout",
                        "-out", str(d / "sa.pub")], check=True, capture_output=True)
        (d / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")
        self._spawn("kube-apiserver", [
            self.apiserver_bin, f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1", f"--secure-port={secure}",
            "--advertise-address=127.0.0.1", f"--cert-dir={d / 'certs'}",
            f"--token-auth-file={d / 'tokens.csv'}", "--anonymous-auth=false",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/16",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc",
            # TTLAfterFinished: the finetune Job's ttlSecondsAfterFinished is alpha in 1.20
            # (GA in 1.23); without the gate 1.20 drops the field.
            "--feature-gates=BoundServiceAccountTokenVolume=true,TTLAfterFinished=true",
        ])
        self.url = f"https://127.0.0.1:{secure}"
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            for name, proc in zip(("etcd", "kube-apiserver"), self.procs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self._log(name)}")
            try:
                resp = self._request("GET", "/readyz")
                if resp.status_code == 200:
                    return self
                last = resp.text[-300:]
            except httpx.HTTPError as err:
                last = str(err)
            time.sleep(0.5)
        raise RuntimeError(f"kube-apiserver not ready in {START_TIMEOUT_S:.0f}s: {last}\n"
                           f"{self._log('kube-apiserver')}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.session.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the process)
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def _log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.session.request(method, self.url + path, **kwargs)

    # API

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind, from the server's discovery."""
        if api_version not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            resp = self._request("GET", base)
            if resp.status_code != 200:
                raise ApplyError(f"API {api_version} not served ({resp.status_code})")
            self._resources[api_version] = {
                r["kind"]: (r["name"], r["namespaced"])
                for r in resp.json()["resources"] if "/" not in r["name"]
            }
        kinds = self._resources[api_version]
        if kind not in kinds:
            raise ApplyError(f"{kind} not served under {api_version} (have {sorted(kinds)})")
        return kinds[kind]

    def apply(self, obj: Obj, namespace: str = "default") -> Obj:
        """Server-side apply ``obj``; returns what the server stored. Raises on refusal."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = self.resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = f"/namespaces/{namespace}" if namespaced else ""
        path = f"{base}{ns}/{plural}/{obj['metadata']['name']}"
        resp = self._request(
            "PATCH", path, params={"fieldManager": "bge-tests", "force": "true"},
            content=yaml.safe_dump(obj).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if resp.status_code not in (200, 201):
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text
            raise ApplyError(f"{kind}/{obj['metadata']['name']} refused "
                             f"({resp.status_code}): {message}")
        return resp.json()

    def install_crd(self, crd: Obj) -> None:
        """Apply a CRD and wait until it is Established (bounded)."""
        self.apply(crd)
        name = crd["metadata"]["name"]
        deadline = time.monotonic() + 60
        conditions: dict[str, str] = {}
        while time.monotonic() < deadline:
            got = self._request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            ).json()
            status = got.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Established") == "True":
                self._resources.clear()
                return
            time.sleep(0.2)
        raise ApplyError(f"CRD {name} not Established in 60s: {conditions}")

    def ensure_namespace(self, name: str) -> None:
        """The namespace and its ``default`` ServiceAccount (the controller manager, which is
        not running here, would create that one; Pods without a serviceAccountName need it)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default"}}, name)


# --- pruning ------------------------------------------------------------------------------


def pruned_paths(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Paths of what was sent but is not in what the server stored (pruned or dropped).

    Values the server normalised are not reported (quantities "1000m" -> "1", an int port
    stays an int): only missing keys and shortened lists are.
    """
    missing: list[str] = []
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path or "<root>"]
        for key, value in sent.items():
            here = f"{path}.{key}" if path else str(key)
            if key not in stored:
                if value not in (None, {}, []):
                    missing.append(here)
                continue
            missing += pruned_paths(value, stored[key], here)
    elif isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) < len(sent):
            return [path]
        for i, (a, b) in enumerate(zip(sent, stored, strict=False)):
            lost = pruned_paths(a, b, f"{path}[{i}]")
            # Some kinds store list items in another order (an autoscaling/v2beta2 HPA is kept
            # as autoscaling/v1 and puts the CPU target last): any stored item may match.
            if lost and any(not pruned_paths(a, other) for other in stored):
                lost = []
            missing += lost
    return missing
