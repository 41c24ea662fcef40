#!/usr/bin/env python3
"""Writes the JSON schemas scripts/check-deploy validates KEDA objects against.

KEDA's CRDs carry an openAPIV3Schema; the PyPI package cloudcoil-models-keda holds pydantic
models generated from those CRDs (version 2.16.1.0: KEDA v2.16.1). This script turns the
models' JSON schema into a strict one, as `kubectl apply` with server-side field validation
would see it:

- optional fields lose the `null` alternative pydantic adds (Kubernetes has no nulls there);
- every object with declared properties refuses unknown ones (a misspelt field fails);
- apiVersion, kind, metadata and spec are required;
- titles and defaults (pydantic's, not the CRD's) are dropped.

Run it in a throwaway venv when moving to another KEDA version:

    python3 -m venv /tmp/keda-schemas
    /tmp/keda-schemas/bin/pip install cloudcoil==0.6.0 cloudcoil-models-keda==2.16.1.0
    /tmp/keda-schemas/bin/python deploy/schemas/generate_keda.py

It rewrites deploy/schemas/keda/*.json; commit them with the version in the message.
"""

import json
import pathlib
import sys

from cloudcoil.models.keda import v1alpha1

OUT = pathlib.Path(__file__).resolve().parent / "keda"
KINDS = {
    "ScaledObject": v1alpha1.ScaledObject,
    "TriggerAuthentication": v1alpha1.TriggerAuthentication,
}


def strict(node):
    """Rewrites one schema node (and everything under it)."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in ("title", "default")}
    alternatives = node.get("anyOf")
    if alternatives is not None:
        kept = [a for a in alternatives if a != {"type": "null"}]
        node.pop("anyOf")
        if len(kept) == 1:
            node = {**kept[0], **node}
        else:
            node["anyOf"] = kept
    node = {k: strict(v) for k, v in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


def schema_of(kind, model):
    schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        f"KEDA {kind} (keda.sh/v1alpha1), from cloudcoil-models-keda 2.16.1.0 "
        "(KEDA v2.16.1 CRDs) by deploy/schemas/generate_keda.py; do not edit by hand."
    )
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    return schema


def main():
    OUT.mkdir(exist_ok=True)
    for kind, model in KINDS.items():
        path = OUT / f"{kind.lower()}-keda-v1alpha1.json"
        path.write_text(json.dumps(schema_of(kind, model), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
