#!/usr/bin/env python3
"""Offline checks of Coffer's deployment files; run by scripts/check-deploy in its venv.

    check_deploy.py k8s DIR --schemas DIR [--kube-version 1.31]
        Every YAML document under DIR against the Kubernetes JSON schemas of
        kubernetes-validate (strict: unknown fields fail) or, for keda.sh objects, the
        schemas vendored in deploy/schemas/keda; every kustomization.yaml against the
        files beside it; and the references between the objects (secrets, config,
        probes, selectors, the KEDA trigger) and the values several files must share.
    check_deploy.py compose CONFIG_JSON --root DIR
        The output of `docker compose config --format json` (Compose itself has checked
        the file against its schema): bind mounts exist, the coffer services agree on
        their endpoints and depend on the services they talk to, the drain fits the stop
        grace period, the collector and Prometheus configurations point at real services,
        and image tags are pinned.

Each problem is printed as `FAIL <file>: <object>: <field>: <what>`; the exit status is 1
when there is any.
"""

import argparse
import json
import pathlib
import posixpath
import re
import sys
import tomllib
from urllib.parse import urlsplit

import jsonschema
import yaml

PROBLEMS = []


def fail(file, obj, field, message):
    PROBLEMS.append(f"FAIL {file}: {obj}: {field}: {message}")


def show_path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(document)"


# ---------------------------------------------------------------- values


def duration_seconds(text):
    """A Coffer duration (`500ms`, `30s`, `2m`, `1h`, `7d`, bare seconds), as seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def compose_duration_seconds(text):
    """A Compose duration (`1m30s`, `45s`, `1h`)."""
    total, rest = 0.0, str(text).strip()
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", rest):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


QUANTITY_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "": 1,
}


def quantity(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?", str(text))
    if not m:
        return None
    return float(m.group(1)) * QUANTITY_SUFFIXES[m.group(2) or ""]


# ---------------------------------------------------------------- kubernetes

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


class Doc:
    def __init__(self, file, index, body):
        self.file, self.index, self.body = file, index, body

    @property
    def kind(self):
        return self.body.get("kind", "?")

    @property
    def name(self):
        return (self.body.get("metadata") or {}).get("name", "?")

    @property
    def label(self):
        return f"{self.kind}/{self.name}"

    def pod_spec(self):
        spec = self.body.get("spec") or {}
        if self.kind == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        return ((spec.get("template") or {}).get("spec")) or {}

    def pod_labels(self):
        spec = self.body.get("spec") or {}
        if self.kind == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        return (((spec.get("template") or {}).get("metadata") or {}).get("labels")) or {}


def load_yaml_docs(path, rel):
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        fail(rel, "(file)", "(yaml)", f"not valid YAML: {e}")
        return []
    return [(i, d) for i, d in enumerate(docs) if d is not None]


class KubeSchemas:
    """kubernetes-validate's bundled schemas (strict), plus the vendored KEDA ones."""

    def __init__(self, version, keda_dir):
        from kubernetes_validate import utils as kv
        from referencing import Registry, Resource

        self.kv, self.Registry, self.Resource = kv, Registry, Resource
        versions = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)]
        if not versions:
            raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version}")
        self.version = versions[-1]
        self.dir = f"v{self.version}-local-strict"
        self.definitions = kv.schema_contents(f"kubernetes-json-schema/{self.dir}/_definitions.json", version)
        self.keda_dir = keda_dir
        self.cache = {}

    def validator(self, api_version, kind):
        key = (api_version, kind)
        if key in self.cache:
            return self.cache[key]
        if api_version.startswith("keda.sh/"):
            path = self.keda_dir / f"{kind.lower()}-keda-{api_version.split('/')[1]}.json"
            if not path.exists():
                self.cache[key] = None
                return None
            schema = json.loads(path.read_text())
            validator = jsonschema.Draft202012Validator(schema)
        else:
            group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            try:
                schema = self.kv.schema_contents(
                    f"kubernetes-json-schema/{self.dir}/{kind.lower()}-{group}.json", self.version
                )
            except FileNotFoundError:
                self.cache[key] = None
                return None
            registry = self.Resource.from_contents(self.definitions) @ (
                self.Resource.from_contents(schema) @ self.Registry()
            )
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
        self.cache[key] = validator
        return validator


def leaf_errors(error):
    """The most specific errors under a schema error (anyOf/oneOf branches included)."""
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return leaf_errors(best) if best is not None else [error]
    return [error]


def validate_schema(doc, schemas):
    body = doc.body
    for field in ("apiVersion", "kind"):
        if not isinstance(body.get(field), str):
            fail(doc.file, doc.label, field, "missing")
            return
    if not (body.get("metadata") or {}).get("name"):
        fail(doc.file, doc.label, "metadata.name", "missing")
    validator = schemas.validator(body["apiVersion"], body["kind"])
    if validator is None:
        fail(doc.file, doc.label, "apiVersion/kind",
             f"no schema for {body['kind']} in {body['apiVersion']} (Kubernetes {schemas.version}, "
             "or deploy/schemas/keda for keda.sh)")
        return
    for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in leaf_errors(error):
            fail(doc.file, doc.label, show_path(leaf.absolute_path), leaf.message)


def check_kustomization(path, rel_of, root):
    rel = rel_of(path)
    docs = load_yaml_docs(path, rel)
    if len(docs) != 1 or not isinstance(docs[0][1], dict):
        fail(rel, "Kustomization", "(document)", "must be one mapping")
        return
    k = docs[0][1]
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        fail(rel, "Kustomization", "apiVersion/kind", "must be kustomize.config.k8s.io/v1beta1 Kustomization")
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "commonAnnotations",
             "configMapGenerator", "secretGenerator", "patches", "components", "namePrefix",
             "nameSuffix", "replicas", "generatorOptions"}
    for key in k:
        if key not in known:
            fail(rel, "Kustomization", key, "unknown field")
    here = path.parent
    listed = set()
    for i, res in enumerate(k.get("resources") or []):
        target = (here / res).resolve()
        if not target.exists():
            fail(rel, "Kustomization", f"resources[{i}]", f"{res} does not exist")
        elif root.resolve() not in target.parents and target != root.resolve():
            fail(rel, "Kustomization", f"resources[{i}]", f"{res} is outside {root}")
        listed.add(target)
    for sibling in sorted(here.glob("*.yaml")):
        if sibling.name != "kustomization.yaml" and sibling.resolve() not in listed:
            fail(rel_of(sibling), "(file)", "(kustomization)",
                 f"not listed in the resources of {rel} (list it, or move it to a folder of its own)")
    for i, image in enumerate(k.get("images") or []):
        if not image.get("newTag") and not image.get("digest"):
            fail(rel, "Kustomization", f"images[{i}]", "no pinned newTag or digest")
    ns = k.get("namespace")
    return ns


def index_objects(docs):
    objects = {}
    for d in docs:
        objects.setdefault((d.kind, d.name), d)
    return objects


def secret_keys(doc):
    body = doc.body
    return set((body.get("data") or {}).keys()) | set((body.get("stringData") or {}).keys())


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod_spec(doc, objects):
    spec = doc.pod_spec()
    where = doc.label
    sa = spec.get("serviceAccountName")
    if sa and ("ServiceAccount", sa) not in objects:
        fail(doc.file, where, "serviceAccountName", f"no ServiceAccount {sa!r} among the manifests")
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    served = {}  # mount path -> (volume, items path -> key) for files the pod can read
    for vname, v in volumes.items():
        if "secret" in v:
            name = v["secret"].get("secretName")
            secret = objects.get(("Secret", name))
            if secret is None:
                fail(doc.file, where, f"volumes[{vname}].secret.secretName",
                     f"no Secret {name!r} among the manifests (examples/ included)")
                continue
            for i, item in enumerate(v["secret"].get("items") or []):
                if item.get("key") not in secret_keys(secret):
                    fail(doc.file, where, f"volumes[{vname}].secret.items[{i}].key",
                         f"Secret {name} has no key {item.get('key')!r}")
        if "configMap" in v:
            name = v["configMap"].get("name")
            cm = objects.get(("ConfigMap", name))
            if cm is None:
                fail(doc.file, where, f"volumes[{vname}].configMap.name", f"no ConfigMap {name!r}")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        cname = c.get("name", "?")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                fail(doc.file, where, f"containers[{cname}].{probe}.httpGet.port",
                     f"no container port named {port!r}")
        files = {}
        for i, m in enumerate(c.get("volumeMounts") or []):
            v = volumes.get(m.get("name"))
            if v is None:
                fail(doc.file, where, f"containers[{cname}].volumeMounts[{i}].name",
                     f"no volume {m.get('name')!r}")
                continue
            mount = m.get("mountPath", "")
            if "configMap" in v:
                cm = objects.get(("ConfigMap", v["configMap"].get("name")))
                data = (cm.body.get("data") or {}) if cm else {}
                if m.get("subPath"):
                    if cm and m["subPath"] not in data:
                        fail(doc.file, where, f"containers[{cname}].volumeMounts[{i}].subPath",
                             f"ConfigMap {cm.name} has no key {m['subPath']!r}")
                    files[mount] = ("configmap", data.get(m["subPath"]))
                else:
                    for key, text in data.items():
                        files[posixpath.join(mount, key)] = ("configmap", text)
            if "secret" in v:
                secret = objects.get(("Secret", v["secret"].get("secretName")))
                items = v["secret"].get("items")
                paths = [it.get("path") for it in items] if items else sorted(secret_keys(secret) if secret else [])
                for p in paths:
                    files[posixpath.join(mount, p)] = ("secret", None)
        served[cname] = files
        env = {e.get("name"): e for e in c.get("env") or []}
        for ename, e in env.items():
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                s = objects.get(("Secret", ref.get("name")))
                if s is None or ref.get("key") not in secret_keys(s):
                    fail(doc.file, where, f"containers[{cname}].env[{ename}].valueFrom.secretKeyRef",
                         f"no key {ref.get('key')!r} in Secret {ref.get('name')!r}")
        check_coffer_files(doc, cname, env, files)
        check_resources(doc, cname, c.get("resources") or {})


def check_coffer_files(doc, cname, env, files):
    """COFFER_CONFIG names a mounted TOML file; every *_file in it and every *_FILE variable
    names a file a Secret volume serves."""
    where = doc.label

    def value(name):
        return (env.get(name) or {}).get("value")

    for name in [n for n in env if n.startswith("COFFER_") and n.endswith("_FILE")]:
        path = value(name)
        if path and files.get(path, (None,))[0] != "secret":
            fail(doc.file, where, f"containers[{cname}].env[{name}]", f"{path} is not a file any Secret volume mounts")
    config = value("COFFER_CONFIG")
    if not config:
        return
    kind, text = files.get(config, (None, None))
    if kind != "configmap" or text is None:
        fail(doc.file, where, f"containers[{cname}].env[COFFER_CONFIG]", f"{config} is not a mounted ConfigMap key")
        return
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(doc.file, where, f"containers[{cname}].env[COFFER_CONFIG]", f"{config} is not valid TOML: {e}")
        return

    def walk(node, prefix):
        for key, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{key}.")
            elif key.endswith("_file") and files.get(v, (None,))[0] != "secret":
                fail(doc.file, where, f"{config} {prefix}{key}", f"{v} is not a file any Secret volume of {cname} mounts")
    walk(toml, "")


def check_resources(doc, cname, resources):
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for res in ("cpu", "memory"):
        if res not in requests:
            fail(doc.file, doc.label, f"containers[{cname}].resources.requests.{res}", "missing")
        r, l = quantity(requests.get(res, "0")), quantity(limits.get(res, "0"))
        if res in limits and r is not None and l is not None and r > l:
            fail(doc.file, doc.label, f"containers[{cname}].resources", f"{res} request {requests[res]} exceeds its limit {limits[res]}")
    if "memory" not in limits:
        fail(doc.file, doc.label, f"containers[{cname}].resources.limits.memory", "missing")


def coffer_containers(doc):
    for c in doc.pod_spec().get("containers") or []:
        image = str(c.get("image", ""))
        if image == "coffer" or image.split(":")[0].endswith("/coffer") or image.startswith("coffer:"):
            yield c


def check_cross_references(docs, objects):
    shared = {}
    for d in docs:
        if d.kind in WORKLOAD_KINDS:
            check_pod_spec(d, objects)
            for c in coffer_containers(d):
                env = {e.get("name"): e.get("value") for e in c.get("env") or []}
                for name in ("COFFER_CONFIG", "COFFER_VENDOR", "COFFER_ENVELOPE_KEY_FILE", "COFFER_QUEUE_PREFIX"):
                    shared.setdefault(name, {}).setdefault(env.get(name), []).append(f"{d.file} {d.label}")
                if (c.get("args") or [None])[0] == "worker":
                    check_worker(d, c, env, objects)
    for name, values in shared.items():
        if len(values) > 1:
            detail = "; ".join(f"{v!r} in {', '.join(w)}" for v, w in values.items())
            fail("(several files)", "coffer containers", f"env {name}", f"must be the same everywhere: {detail}")
    for d in docs:
        if d.kind == "Service":
            check_service(d, docs)
        elif d.kind == "PodDisruptionBudget":
            sel = ((d.body.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not any(matches(sel, w.pod_labels()) for w in docs if w.kind in WORKLOAD_KINDS):
                fail(d.file, d.label, "spec.selector.matchLabels", f"selects no pod of any workload: {sel}")
        elif d.kind == "ScaledObject":
            check_scaled_object(d, objects, shared)
        elif d.kind == "TriggerAuthentication":
            for i, ref in enumerate((d.body.get("spec") or {}).get("secretTargetRef") or []):
                s = objects.get(("Secret", ref.get("name")))
                if s is None or ref.get("key") not in secret_keys(s):
                    fail(d.file, d.label, f"spec.secretTargetRef[{i}]",
                         f"no key {ref.get('key')!r} in Secret {ref.get('name')!r} (examples/ included)")


def check_worker(doc, container, env, objects):
    drain = duration_seconds(env.get("COFFER_DRAIN_TIMEOUT") or "30s")
    grace = doc.pod_spec().get("terminationGracePeriodSeconds", 30)
    if drain is None:
        fail(doc.file, doc.label, "env COFFER_DRAIN_TIMEOUT", f"not a duration: {env.get('COFFER_DRAIN_TIMEOUT')!r}")
    elif grace <= drain:
        fail(doc.file, doc.label, "spec.template.spec.terminationGracePeriodSeconds",
             f"{grace} s must exceed the drain timeout ({drain:g} s), or the kubelet kills workers mid-drain")


def check_service(doc, docs):
    spec = doc.body.get("spec") or {}
    selector = spec.get("selector") or {}
    pods = [w for w in docs if w.kind in WORKLOAD_KINDS and matches(selector, w.pod_labels())]
    if not pods:
        fail(doc.file, doc.label, "spec.selector", f"selects no pod of any workload: {selector}")
    for i, port in enumerate(spec.get("ports") or []):
        target = port.get("targetPort")
        if isinstance(target, str):
            for w in pods:
                names = {p.get("name") for c in w.pod_spec().get("containers") or [] for p in c.get("ports") or []}
                if target not in names:
                    fail(doc.file, doc.label, f"spec.ports[{i}].targetPort", f"{w.label} has no container port named {target!r}")


def check_scaled_object(doc, objects, shared):
    spec = doc.body.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    target = objects.get((ref.get("kind") or "Deployment", ref.get("name")))
    if target is None:
        fail(doc.file, doc.label, "spec.scaleTargetRef", f"no {ref.get('kind') or 'Deployment'} {ref.get('name')!r}")
    elif "replicas" in (target.body.get("spec") or {}):
        fail(target.file, target.label, "spec.replicas",
             f"set, but {doc.label} owns the replica count: every apply would fight the HPA")
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        fail(doc.file, doc.label, "spec.minReplicaCount", f"{lo} exceeds maxReplicaCount {hi}")
    prefixes = [p for p in shared.get("COFFER_QUEUE_PREFIX", {None: []}) if p] or ["coffer"]
    for i, trigger in enumerate(spec.get("triggers") or []):
        field = f"spec.triggers[{i}]"
        auth = (trigger.get("authenticationRef") or {}).get("name")
        if auth and (trigger["authenticationRef"].get("kind") or "TriggerAuthentication", auth) not in objects:
            fail(doc.file, doc.label, f"{field}.authenticationRef", f"no TriggerAuthentication {auth!r}")
        if trigger.get("type") != "rabbitmq":
            continue
        md = trigger.get("metadata") or {}
        if "host" in md:
            fail(doc.file, doc.label, f"{field}.metadata.host", "carries credentials: take it from a TriggerAuthentication")
        if "host" not in md and "hostFromEnv" not in md:
            ta = objects.get(("TriggerAuthentication", auth)) if auth else None
            params = {r.get("parameter") for r in ((ta.body.get("spec") or {}).get("secretTargetRef") or [])} if ta else set()
            if "host" not in params:
                fail(doc.file, doc.label, f"{field}.authenticationRef", "no `host` parameter for the rabbitmq trigger")
        expected = [f"{p}.jobs" for p in prefixes]
        if md.get("queueName") not in expected:
            fail(doc.file, doc.label, f"{field}.metadata.queueName", f"{md.get('queueName')!r}, the workers consume {expected[0]!r}")
        if md.get("mode") not in ("QueueLength", "MessageRate"):
            fail(doc.file, doc.label, f"{field}.metadata.mode", f"{md.get('mode')!r}: QueueLength or MessageRate")
        if md.get("protocol", "auto") not in ("auto", "amqp", "http"):
            fail(doc.file, doc.label, f"{field}.metadata.protocol", f"{md.get('protocol')!r}: auto, amqp or http")
        if md.get("mode") == "QueueLength" and (md.get("protocol") != "http" or md.get("excludeUnacknowledged", "false") != "false"):
            fail(doc.file, doc.label, f"{field}.metadata.protocol",
                 "QueueLength must count unacknowledged messages (protocol http, excludeUnacknowledged false): "
                 "otherwise busy workers read as idle and are scaled away")
        try:
            if float(md.get("value", "")) <= 0:
                raise ValueError
        except ValueError:
            fail(doc.file, doc.label, f"{field}.metadata.value", f"{md.get('value')!r} is not a positive number")


def cmd_k8s(args):
    root = pathlib.Path(args.dir)
    rel_of = lambda p: str(p)  # noqa: E731 - paths are printed as given
    schemas = KubeSchemas(args.kube_version, pathlib.Path(args.schemas) / "keda")
    docs = []
    for path in sorted(root.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            check_kustomization(path, rel_of, root)
            continue
        for i, body in load_yaml_docs(path, rel_of(path)):
            if not isinstance(body, dict):
                fail(rel_of(path), f"document {i}", "(document)", "not a mapping")
                continue
            docs.append(Doc(rel_of(path), i, body))
    for d in docs:
        validate_schema(d, schemas)
    check_cross_references(docs, index_objects(docs))
    return report(f"k8s: {len(docs)} objects in {len({d.file for d in docs})} files valid "
                  f"(Kubernetes {schemas.version} strict schemas, KEDA from {args.schemas}/keda)")


# ---------------------------------------------------------------- compose

# What each coffer command talks to: the env variable naming it and whether it must be up.
NEEDS = {
    "worker": ("COFFER_AMQP_URL", "COFFER_DATABASE_URL", "COFFER_S3_ENDPOINT"),
    "scheduler": ("COFFER_AMQP_URL", "COFFER_DATABASE_URL"),
    "janitor": ("COFFER_DATABASE_URL", "COFFER_S3_ENDPOINT"),
}
SHARED_ENV = ("COFFER_AMQP_URL", "COFFER_DATABASE_URL", "COFFER_S3_ENDPOINT", "AWS_REGION",
              "COFFER_HTTP_ADDR", "COFFER_OTLP_ENDPOINT", "COFFER_QUEUE_PREFIX", "COFFER_VENDOR")


def cmd_compose(args):
    root = pathlib.Path(args.root)
    file = args.file
    model = json.loads(pathlib.Path(args.config_json).read_text())
    services = model.get("services") or {}
    coffer = {}
    for name, s in sorted(services.items()):
        image = s.get("image") or ""
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            fail(file, f"services.{name}", "image", f"{image!r}: pin a tag")
        for i, v in enumerate(s.get("volumes") or []):
            if v.get("type") == "bind" and not pathlib.Path(v.get("source", "")).exists():
                fail(file, f"services.{name}", f"volumes[{i}]", f"bind source {v.get('source')} does not exist")
        command = s.get("command") or []
        if image.split(":")[0] == "coffer" and command:
            coffer[name] = (command[0], s)
    if not coffer:
        fail(file, "services", "(coffer)", "no service runs the coffer image")
    for var in SHARED_ENV:
        values = {n: (s.get("environment") or {}).get(var) for n, (_, s) in coffer.items()}
        if len(set(values.values())) > 1:
            fail(file, "coffer services", f"environment.{var}", f"differs between services: {values}")
    for name, (command, s) in coffer.items():
        env = s.get("environment") or {}
        depends = s.get("depends_on") or {}
        for var in NEEDS.get(command, ()):
            url = env.get(var)
            host = urlsplit(url).hostname if url else None
            if host is None:
                fail(file, f"services.{name}", f"environment.{var}", "missing")
            elif host in services and host not in depends:
                fail(file, f"services.{name}", "depends_on", f"{command} talks to {host} ({var}) but does not depend on it")
        otlp = env.get("COFFER_OTLP_ENDPOINT")
        if otlp:
            host = urlsplit(otlp).hostname
            if host not in services:
                fail(file, f"services.{name}", "environment.COFFER_OTLP_ENDPOINT", f"{host} is no service")
        addr = env.get("COFFER_HTTP_ADDR")
        port = int(addr.rsplit(":", 1)[1]) if addr and ":" in addr else None
        for i, p in enumerate(s.get("ports") or []):
            if port is not None and int(p.get("target")) != port:
                fail(file, f"services.{name}", f"ports[{i}]", f"target {p.get('target')} is not COFFER_HTTP_ADDR's port {port}")
        if command == "worker":
            drain = duration_seconds(env.get("COFFER_DRAIN_TIMEOUT") or "30s")
            grace = compose_duration_seconds(s.get("stop_grace_period") or "10s")
            if drain is not None and grace <= drain:
                fail(file, f"services.{name}", "stop_grace_period",
                     f"{grace:g} s must exceed COFFER_DRAIN_TIMEOUT ({drain:g} s), or Docker kills the worker mid-drain")
    check_collector(file, services, coffer)
    check_prometheus(file, services, coffer)
    return report(f"compose: {len(services)} services consistent ({', '.join(sorted(services))})")


def bind_source(service, target):
    for v in service.get("volumes") or []:
        if v.get("type") == "bind" and v.get("target") == target:
            return pathlib.Path(v["source"])
    return None


def check_collector(file, services, coffer):
    otlp_hosts = {urlsplit((s.get("environment") or {}).get("COFFER_OTLP_ENDPOINT") or "").hostname for _, s in coffer.values()}
    for host in otlp_hosts - {None}:
        s = services.get(host)
        if s is None:
            continue
        path = bind_source(s, "/etc/otelcol-contrib/config.yaml")
        if path is None or not path.exists():
            fail(file, f"services.{host}", "volumes", "no collector configuration mounted at /etc/otelcol-contrib/config.yaml")
            continue
        rel = str(path)
        try:
            conf = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            fail(rel, "collector", "(yaml)", str(e))
            continue
        pipelines = ((conf.get("service") or {}).get("pipelines")) or {}
        if "traces" not in pipelines:
            fail(rel, "collector", "service.pipelines.traces", "missing: coffer sends traces")
        for pname, p in pipelines.items():
            for section in ("receivers", "processors", "exporters"):
                for ref in p.get(section) or []:
                    if ref not in (conf.get(section) or {}):
                        fail(rel, "collector", f"service.pipelines.{pname}.{section}", f"{ref} is not defined under {section}")
        http = ((((conf.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http") or {}).get("endpoint", "")
        for _, s in coffer.values():
            want = urlsplit((s.get("environment") or {}).get("COFFER_OTLP_ENDPOINT") or "").port
            if want and not http.endswith(f":{want}"):
                fail(rel, "collector", "receivers.otlp.protocols.http.endpoint", f"{http!r} does not listen on {want}, where coffer sends")
            if http.startswith(("localhost", "127.")):
                fail(rel, "collector", "receivers.otlp.protocols.http.endpoint", "bound to the loopback: other containers cannot reach it")
        for ename, e in (conf.get("exporters") or {}).items():
            endpoint = (e or {}).get("endpoint") if isinstance(e, dict) else None
            if endpoint:
                host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname
                if host not in services:
                    fail(rel, "collector", f"exporters.{ename}.endpoint", f"{host} is no service")


def check_prometheus(file, services, coffer):
    for name, s in services.items():
        if not str(s.get("image", "")).startswith("prom/prometheus"):
            continue
        path = bind_source(s, "/etc/prometheus/prometheus.yml")
        if path is None or not path.exists():
            fail(file, f"services.{name}", "volumes", "no configuration at /etc/prometheus/prometheus.yml")
            continue
        rel = str(path)
        conf = yaml.safe_load(path.read_text()) or {}
        scraped = set()
        for i, job in enumerate(conf.get("scrape_configs") or []):
            for j, sd in enumerate(job.get("dns_sd_configs") or []):
                for n in sd.get("names") or []:
                    if n not in services:
                        fail(rel, job.get("job_name", f"scrape_configs[{i}]"), f"dns_sd_configs[{j}].names", f"{n} is no service")
                    scraped.add((n, sd.get("port")))
            for sc in job.get("static_configs") or []:
                for t in sc.get("targets") or []:
                    host, _, port = t.rpartition(":")
                    scraped.add((host, int(port) if port.isdigit() else None))
        for cname, (_, cs) in coffer.items():
            addr = (cs.get("environment") or {}).get("COFFER_HTTP_ADDR")
            if addr and (cname, int(addr.rsplit(":", 1)[1])) not in scraped:
                fail(rel, "scrape_configs", cname, f"serves /metrics on {addr} but is not scraped")


def report(ok_line):
    for p in PROBLEMS:
        print(p)
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s)")
        return 1
    print(ok_line)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    k8s = sub.add_parser("k8s")
    k8s.add_argument("dir")
    k8s.add_argument("--schemas", required=True)
    k8s.add_argument("--kube-version", default="1.31")
    compose = sub.add_parser("compose")
    compose.add_argument("config_json")
    compose.add_argument("--root", required=True)
    compose.add_argument("--file", default="docker-compose.yml")
    args = parser.parse_args()
    return cmd_k8s(args) if args.command == "k8s" else cmd_compose(args)


if __name__ == "__main__":
    sys.exit(main())
