#!/usr/bin/env python3
"""Reduces the official FHIR R4 core package to conformance/r4/model.json.

Reads the StructureDefinition-*.json files of hl7.fhir.r4.core (4.0.1), keeps only the base definitions
(primitive types, complex types, resources: derivation "specialization" or no base at all; profiles and logical
models are skipped) and writes, from their snapshots, every type with its elements:

  {"fhirVersion": "4.0.1",
   "resourceTypes": [concrete resource type names, sorted],
   "types": [{"name": "Patient", "kind": "resource", "abstract": false, "base": "DomainResource",
              "elements": [{"name": "contact", "min": 0, "max": "*", "types": ["Patient.contact"]}, ...]},
             {"name": "Patient.contact", "kind": "complex", "abstract": false, "base": "BackboneElement",
              "elements": [...]}, ...]}

Element names are JSON property names; a choice keeps its `[x]` (`value[x]`) and lists its type codes. An element
with children (type BackboneElement or Element) gets a synthetic type named by its path; a contentReference
(`#Questionnaire.item`) points to that synthetic type. `max` is "1" or "*". `"summary": true` marks isSummary.
FHIRPath system types (System.String) are replaced by the FHIR primitive they stand for. The `value` element of
primitive types is left out (its lexical rules are in fhir/src/primitives.cpp).

Usage: gen_model.py [PACKAGE_DIR] [OUTPUT]
  defaults: ../shared/data/hl7.fhir.r4.core/package (beside the checkout) and conformance/r4/model.json.
"""

import glob
import json
import os
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
# The 4.0.1 snapshots say `string` for Resource.id, but the specification (resource.html) gives it type `id`,
# and servers enforce the id rules on it.
TYPE_OVERRIDES = {"Resource.id": "id"}
KIND = {"primitive-type": "primitive", "complex-type": "complex", "resource": "resource"}


def is_base_definition(sd):
    if sd.get("kind") not in KIND:
        return False  # logical models
    return sd.get("derivation") in ("specialization", None)  # None: the roots, Element and Resource


def type_code(element, type_entry):
    base_path = element.get("base", {}).get("path", element["path"])
    if base_path in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[base_path]
    code = type_entry["code"]
    if code.startswith(SYSTEM_PREFIX):
        for ext in type_entry.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext.get("valueUrl") or ext.get("valueUri") or ext.get("valueString")
        if code == SYSTEM_PREFIX + "String":
            return "string"  # Element.id itself carries no extension
        raise ValueError(f"{element['path']}: no FHIR type for {code}")
    return code


def convert(sd):
    """Returns the list of types (the definition's own and its synthetic ones) of one StructureDefinition."""
    root = sd["type"]
    elements = sd["snapshot"]["element"]
    paths_with_children = set()
    for e in elements:
        path = e["path"]
        if "." in path:
            paths_with_children.add(path.rsplit(".", 1)[0])

    types = {}
    order = []

    def new_type(name, kind, abstract, base):
        t = {"name": name, "kind": kind, "abstract": abstract}
        if base:
            t["base"] = base
        t["elements"] = []
        types[name] = t
        order.append(name)
        return t

    base = sd.get("baseDefinition", "").rsplit("/", 1)[-1] or None
    new_type(root, KIND[sd["kind"]], bool(sd.get("abstract")), base)

    for e in elements:
        path = e["path"]
        if "." not in path:
            continue
        parent, name = path.rsplit(".", 1)
        if parent not in types:
            raise ValueError(f"{path}: parent {parent} is not a type")
        if e.get("max") == "0":
            continue
        if sd["kind"] == "primitive-type" and parent == root and name == "value":
            continue
        out = {"name": name, "min": int(e.get("min", 0)), "max": "1" if e.get("max") == "1" else "*"}
        if "contentReference" in e:
            out["types"] = [e["contentReference"].lstrip("#")]
        else:
            codes = [type_code(e, t) for t in e.get("type", [])]
            if path in paths_with_children:
                if codes not in (["BackboneElement"], ["Element"]):
                    raise ValueError(f"{path}: children under type {codes}")
                new_type(path, "complex", False, codes[0])
                codes = [path]
            if not codes:
                raise ValueError(f"{path}: no type")
            if len(codes) > 1 and not name.endswith("[x]"):
                raise ValueError(f"{path}: several types but not a choice")
            out["types"] = codes
        if e.get("isSummary"):
            out["summary"] = True
        types[parent]["elements"].append(out)
    return [types[n] for n in order]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    # Default: the shared data folder beside the project checkout (../shared/data).
    default_package = os.path.join(here, "..", "..", "..", "shared", "data", "hl7.fhir.r4.core", "package")
    package = sys.argv[1] if len(sys.argv) > 1 else default_package
    output = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "r4", "model.json")

    all_types = []
    version = None
    for path in sorted(glob.glob(os.path.join(package, "StructureDefinition-*.json"))):
        with open(path, encoding="utf-8") as f:
            sd = json.load(f)
        if sd.get("resourceType") != "StructureDefinition" or not is_base_definition(sd):
            continue
        version = version or sd.get("fhirVersion")
        all_types.extend(convert(sd))

    if not all_types:
        sys.exit(f"gen_model.py: no StructureDefinition-*.json in {package}: is it the package folder?")
    all_types.sort(key=lambda t: t["name"])
    names = {t["name"] for t in all_types}
    for t in all_types:
        for e in t["elements"]:
            for code in e["types"]:
                if code not in names:
                    raise ValueError(f"{t['name']}.{e['name']}: unknown type {code}")
    resources = sorted(t["name"] for t in all_types if t["kind"] == "resource" and not t["abstract"])

    # One type per line: small, and diffs stay readable.
    lines = ["{", f'"fhirVersion":{json.dumps(version)},',
             '"resourceTypes":' + json.dumps(resources, separators=(",", ":")) + ",", '"types":[']
    for i, t in enumerate(all_types):
        sep = "," if i + 1 < len(all_types) else ""
        lines.append(json.dumps(t, separators=(",", ":")) + sep)
    lines.append("]}")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{output}: {len(all_types)} types, {len(resources)} resource types, "
          f"{os.path.getsize(output)} bytes")


if __name__ == "__main__":
    main()
