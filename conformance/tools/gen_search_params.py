#!/usr/bin/env python3
"""Reduces the official FHIR R4 core package to conformance/r4/search-parameters.json and compartments.json.

Reads the SearchParameter-*.json files of hl7.fhir.r4.core (4.0.1) and writes every SearchParameter without its
narrative, description and contact details:

  {"fhirVersion": "4.0.1",
   "parameters": [
     {"url": "http://hl7.org/fhir/SearchParameter/clinical-patient", "code": "patient", "name": "patient",
      "base": ["AllergyIntolerance", ...], "type": "reference",
      "expression": "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | ...",
      "expressions": {"AllergyIntolerance": "AllergyIntolerance.patient",
                      "CarePlan": "CarePlan.subject.where(resolve() is Patient)", ...},
      "xpathUsage": "normal", "target": ["Group", "Patient"],
      "modifier": [...], "comparator": [...], "multipleOr": false, "multipleAnd": true, "chain": [...],
      "component": [{"definition": "http://...", "expression": "code"}, ...]}, ...]}

Optional members are left out when the definition has none. `expressions` gives, per base type, the part of the
expression that applies to it: the expression is split on its top-level `|` (outside parentheses, brackets and
string literals) and a base keeps the parts whose first path segment is that type, or that start with no type
name at all (`extension('...')`, `id`). Parts of a base are joined again with " | ". A base with no such part gets
no entry (and the script warns).

The common parameters (base Resource or DomainResource: _id, _lastUpdated, _tag, _profile, _security, _source,
_query, _content, _filter, _text) are kept with that base: they apply to every resource type. The package does not
define _list, _has and _type as SearchParameter resources (the specification defines them in search.html); they
are added with base Resource, no url and "synthetic": true.

Left out: the three example SearchParameters of the package (`example`, `example-reference`, `example-extension`:
experimental copies of _id and Condition.subject, and a Patient parameter on a DocumentReference path), and the
experimental extension parameters that have no FHIRPath expression (codesystem-extensions-*,
valueset-extensions-*, patient-extensions-Patient-age and -birthOrderBoolean).

compartments.json: each CompartmentDefinition-*.json reduced to
  {"Patient": {"Account": ["subject"], "AllergyIntolerance": ["patient", "recorder", "asserter"], ...}, ...}
keyed by compartment code; a resource type with no param (not in the compartment) is left out. "{def}" (the
compartment's own resource) is kept as the specification writes it.

Parameters are sorted by url (synthetic ones, which have none, by code at the end), one per line, so the output is
deterministic and diffs stay readable.

Usage: gen_search_params.py [PACKAGE_DIR] [OUTPUT_DIR]
  defaults: ../shared/data/hl7.fhir.r4.core/package (beside the checkout) and conformance/r4.
"""

import glob
import json
import os
import sys

EXCLUDED_IDS = {"example", "example-extension", "example-reference"}

SYNTHETIC = [
    {"code": "_has", "name": "_has", "base": ["Resource"], "type": "special", "synthetic": True},
    {"code": "_list", "name": "_list", "base": ["Resource"], "type": "special", "synthetic": True},
    {"code": "_type", "name": "_type", "base": ["Resource"], "type": "token", "synthetic": True},
]

TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}


def split_top_level(expression):
    """Splits a FHIRPath expression on `|` outside parentheses, brackets, braces and string literals."""
    parts, depth, start, i, n = [], 0, 0, 0, len(expression)
    while i < n:
        c = expression[i]
        if c in "'`\"":
            i += 1
            while i < n and expression[i] != c:
                i += 2 if expression[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
        i += 1
    if depth != 0:
        raise ValueError(f"unbalanced expression: {expression}")
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def leading_type(part):
    """The type name a part starts with ("Observation" for "(Observation.value as Quantity)"), or None."""
    s = part.lstrip("( \t\n")
    j = 0
    while j < len(s) and (s[j].isalnum() or s[j] == "_"):
        j += 1
    name = s[:j]
    if not name or not name[0].isupper():
        return None  # a path on the context itself, a function (extension('...')), a literal
    if j < len(s) and s[j] == "(":
        return None  # a function call
    return name


def per_base(expression, bases, where):
    parts = split_top_level(expression)
    out = {}
    for base in bases:
        mine = [p for p in parts if leading_type(p) in (base, None)]
        if mine:
            out[base] = " | ".join(mine)
        else:
            print(f"gen_search_params.py: warning: {where}: no part of the expression for base {base}",
                  file=sys.stderr)
    for p in parts:
        t = leading_type(p)
        if t is not None and t not in bases:
            print(f"gen_search_params.py: warning: {where}: part {p!r} names {t}, not a base", file=sys.stderr)
    return out


def convert(sp, where):
    if sp.get("type") not in TYPES:
        raise ValueError(f"{where}: unknown type {sp.get('type')}")
    out = {"url": sp["url"], "code": sp["code"], "name": sp["name"], "base": list(sp["base"]), "type": sp["type"]}
    if "expression" in sp:
        out["expression"] = sp["expression"]
        out["expressions"] = per_base(sp["expression"], sp["base"], where)
    for key in ("xpathUsage", "target", "modifier", "comparator", "multipleOr", "multipleAnd", "chain"):
        if key in sp:
            out[key] = sp[key]
    if "target" in out:
        out["target"] = sorted(out["target"])
    if "component" in sp:
        out["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]]
    return out


def write_lines(path, head, items, tail):
    lines = head + [json.dumps(item, separators=(",", ":"), ensure_ascii=False) + ("," if i + 1 < len(items) else "")
                    for i, item in enumerate(items)] + tail
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_package = os.path.join(here, "..", "..", "..", "shared", "data", "hl7.fhir.r4.core", "package")
    package = sys.argv[1] if len(sys.argv) > 1 else default_package
    output_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "r4")

    params, skipped, version = [], [], None
    for path in sorted(glob.glob(os.path.join(package, "SearchParameter-*.json"))):
        with open(path, encoding="utf-8") as f:
            sp = json.load(f)
        if sp.get("resourceType") != "SearchParameter":
            continue
        where = os.path.basename(path)
        if sp.get("id") in EXCLUDED_IDS:
            skipped.append(where)
            continue
        if not sp.get("base") or ("expression" not in sp and sp.get("experimental")):
            skipped.append(where)
            continue
        if sp.get("version") == "4.0.1":
            version = "4.0.1"
        params.append(convert(sp, where))
    if not params:
        sys.exit(f"gen_search_params.py: no SearchParameter-*.json in {package}: is it the package folder?")

    seen = {}
    for p in params:
        for b in p["base"]:
            key = (b, p["code"])
            if key in seen:
                raise ValueError(f"{p['url']}: {b}.{p['code']} already defined by {seen[key]}")
            seen[key] = p["url"]
    for s in SYNTHETIC:
        if ("Resource", s["code"]) in seen:
            raise ValueError(f"synthetic {s['code']} is defined by the package")
    params.sort(key=lambda p: p["url"])
    params.extend(sorted((dict(s) for s in SYNTHETIC), key=lambda p: p["code"]))

    write_lines(os.path.join(output_dir, "search-parameters.json"),
                ["{", f'"fhirVersion":{json.dumps(version or "4.0.1")},', '"parameters":['], params, ["]}"])

    compartments = {}
    for path in sorted(glob.glob(os.path.join(package, "CompartmentDefinition-*.json"))):
        with open(path, encoding="utf-8") as f:
            cd = json.load(f)
        if cd.get("resourceType") != "CompartmentDefinition" or cd.get("id") == "example":
            continue
        members = {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
        compartments[cd["code"]] = dict(sorted(members.items()))
    lines = ["{"]
    names = sorted(compartments)
    for i, name in enumerate(names):
        lines.append(json.dumps(name) + ":{")
        members = list(compartments[name].items())
        for j, (rt, codes) in enumerate(members):
            lines.append(json.dumps(rt) + ":" + json.dumps(codes, separators=(",", ":")) +
                         ("," if j + 1 < len(members) else ""))
        lines.append("}" + ("," if i + 1 < len(names) else ""))
    lines.append("}")
    with open(os.path.join(output_dir, "compartments.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")

    print(f"gen_search_params.py: {len(params)} parameters ({len(skipped)} skipped: {', '.join(skipped)}); "
          f"{len(compartments)} compartments", file=sys.stderr)


if __name__ == "__main__":
    main()
