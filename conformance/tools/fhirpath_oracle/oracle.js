#!/usr/bin/env node
// The search-index oracle: evaluates, with the reference FHIRPath engine (npm `fhirpath` and its R4 model), every
// SearchParameter expression that applies to an official R4 example of one of a few resource types, and writes the
// results to tests/data/search-oracle/<Type>.json. See README.md here and tests/data/search-oracle/README.md.
//
// Usage: node oracle.js [--examples DIR] [--params FILE] [--model FILE] [--out DIR]
//   --examples  the unpacked examples (every file one resource); default: the first of
//               <repo>/build*/tests/r4-examples/examples that exists
//   --params    default <repo>/conformance/r4/search-parameters.json
//   --model     default <repo>/conformance/r4/model.json (only its resourceTypes list is read)
//   --out       default <repo>/tests/data/search-oracle

'use strict';

const fs = require('fs');
const path = require('path');
const fhirpath = require('fhirpath');
const r4Model = require('fhirpath/fhir-context/r4');
// ResourceNode is not exported by the package's "exports" map; require its file directly (the same module
// instance the engine uses, so `instanceof` and `is` work on what our resolve() returns).
const { ResourceNode } = require(path.join(path.dirname(require.resolve('fhirpath')), 'types.js'));

const TYPES = [
  'Appointment', 'Condition', 'Consent', 'DiagnosticReport', 'Encounter', 'Location', 'MedicationRequest',
  'Observation', 'Patient', 'Practitioner', 'Schedule', 'Slot',
];
// The R4 resource types that derive from Resource directly, not from DomainResource.
const NOT_DOMAIN_RESOURCES = new Set(['Binary', 'Bundle', 'Parameters']);

const repo = path.resolve(__dirname, '..', '..', '..');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (!['--examples', '--params', '--model', '--out'].includes(key) || i + 1 >= argv.length) {
      throw new Error(`usage: node oracle.js [--examples DIR] [--params FILE] [--model FILE] [--out DIR] (got ${key})`);
    }
    args[key.slice(2)] = path.resolve(argv[i + 1]);
  }
  if (!args.examples) {
    const candidates = fs.readdirSync(repo).filter((d) => d.startsWith('build')).sort()
      .map((d) => path.join(repo, d, 'tests', 'r4-examples', 'examples'))
      .filter((d) => fs.existsSync(d));
    if (candidates.length === 0) {
      throw new Error('no build*/tests/r4-examples/examples: configure a build first, or pass --examples DIR');
    }
    args.examples = candidates[0];
  }
  args.params = args.params || path.join(repo, 'conformance', 'r4', 'search-parameters.json');
  args.model = args.model || path.join(repo, 'conformance', 'r4', 'model.json');
  args.out = args.out || path.join(repo, 'tests', 'data', 'search-oracle');
  return args;
}

// resolve(): the engine's own resolve() fetches the target over HTTP (asynchronously). Search parameters only use it
// in `where(resolve() is X)`, which needs the target's type, not its content. So resolve() is replaced by a
// synchronous function that yields, for each reference, a stand-in resource {resourceType, id} whose type is read
// from the reference itself:
//   - "#id": the contained resource with that id in the example (its real content and type); "#" alone: the
//     example itself;
//   - a relative or absolute RESTful reference ("Patient/123", "http://x/fhir/Patient/123",
//     ".../Patient/123/_history/2"): the type before the id, if it is an R4 resource type;
//   - otherwise (urn:uuid:, urn:oid:, a logical reference by identifier only, a display only): Reference.type if
//     present, else nothing.
// Canonicals and uris given to resolve() are read the same way as reference strings.
function makeResolve(resourceTypes) {
  const restful = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
  return {
    fn: function resolve(coll) {
      const ctx = this;
      const root = ctx.dataRoot && ctx.dataRoot[0] instanceof ResourceNode ? ctx.dataRoot[0].data : null;
      const out = [];
      for (const item of coll || []) {
        const data = item instanceof ResourceNode ? item.data : item;
        let reference = null;
        let declaredType = null;
        if (typeof data === 'string') {
          reference = data;
        } else if (data && typeof data === 'object') {
          reference = typeof data.reference === 'string' ? data.reference : null;
          declaredType = typeof data.type === 'string' ? data.type : null;
        } else {
          continue;
        }
        let target = null;
        if (reference !== null && reference.startsWith('#')) {
          if (reference === '#') {
            target = root;
          } else if (root && Array.isArray(root.contained)) {
            target = root.contained.find((c) => c && c.id === reference.slice(1)) || null;
          }
        } else {
          const m = reference === null ? null : restful.exec(reference);
          if (m && resourceTypes.has(m[1])) {
            target = { resourceType: m[1], id: m[2] };
          } else if (declaredType && resourceTypes.has(declaredType)) {
            target = { resourceType: declaredType };
          }
        }
        if (target) out.push(ResourceNode.makeResNode(ctx, target, null, null, null, null));
      }
      return out;
    },
    arity: { 0: [] },
    // Called with the engine's context as `this` and the input as ResourceNodes (else `this` is not the context).
    internalStructures: true,
  };
}

// An engine error without the (long) dump of the collection it was given.
function shortMessage(e) {
  return String(e.message).replace(/, got [\s\S]*$/, '').slice(0, 200);
}

// Splits an expression on its top-level `|` (as conformance/tools/gen_search_params.py does).
function splitTopLevel(expression) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i += 1) {
    const c = expression[i];
    if (c === "'" || c === '`' || c === '"') {
      for (i += 1; i < expression.length && expression[i] !== c; i += expression[i] === '\\' ? 2 : 1);
    } else if ('([{'.includes(c)) {
      depth += 1;
    } else if (')]}'.includes(c)) {
      depth -= 1;
    } else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

// `X as T` and `X.as(T)` written as `X.ofType(T)` (the R5 form of the same search parameters).
function asToOfType(expression) {
  return expression.replace(/\s+as\s+([A-Za-z][A-Za-z0-9_]*)/g, '.ofType($1)').replace(/\.as\(/g, '.ofType(');
}

// The parameters that apply to `type`, with the expression for it, sorted by code.
function parametersFor(params, type) {
  const out = [];
  for (const p of params) {
    let expression = null;
    if (p.base.includes(type)) {
      expression = (p.expressions || {})[type] || null;
    } else if (p.base.includes('Resource')) {
      expression = (p.expressions || {}).Resource || null;
    } else if (p.base.includes('DomainResource') && !NOT_DOMAIN_RESOURCES.has(type)) {
      expression = (p.expressions || {}).DomainResource || null;
    } else {
      continue;
    }
    if (expression) out.push({ param: p, expression });
  }
  out.sort((a, b) => (a.param.code < b.param.code ? -1 : a.param.code > b.param.code ? 1 : 0));
  return out;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const params = JSON.parse(fs.readFileSync(args.params, 'utf8')).parameters;
  const resourceTypes = new Set(JSON.parse(fs.readFileSync(args.model, 'utf8')).resourceTypes);
  const options = { userInvocationTable: { resolve: makeResolve(resourceTypes) } };

  // Compile each (type, expression) once.
  const compiled = new Map();
  const compile = (expression) => {
    if (!compiled.has(expression)) compiled.set(expression, fhirpath.compile(expression, r4Model, options));
    return compiled.get(expression);
  };

  const files = fs.readdirSync(args.examples).filter((f) => f.endsWith('.json')).sort();
  const byType = new Map(TYPES.map((t) => [t, []]));
  for (const f of files) {
    const resource = JSON.parse(fs.readFileSync(path.join(args.examples, f), 'utf8'));
    if (resource && byType.has(resource.resourceType)) byType.get(resource.resourceType).push(f);
  }

  fs.mkdirSync(args.out, { recursive: true });
  const errors = [];
  const notes = [];
  let total = 0;

  // The values of one parameter for one example file.
  const evaluateParameter = (file, param, expression) => {
    // A fresh parse for each evaluation: the engine annotates the object it is given.
    const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (param.type !== 'composite') return compile(expression)(resource);
    // A composite: each item of its expression, as the list of its components' values (in component order), each
    // component evaluated on that item; items where a component has no value are left out (they cannot match).
    const items = fhirpath.evaluate(resource, expression, null, r4Model, { ...options, resolveInternalTypes: false });
    return items
      .map((item) => param.component.map((c) => fhirpath.evaluate(item, c.expression, null, r4Model, options)))
      .filter((tuple) => tuple.every((v) => v.length > 0));
  };
  for (const type of TYPES) {
    const applicable = parametersFor(params, type);
    const result = {};
    for (const f of byType.get(type)) {
      const values = {};
      for (const { param, expression } of applicable) {
        let got;
        try {
          got = evaluateParameter(path.join(args.examples, f), param, expression);
        } catch (e) {
          // FHIRPath makes `as` an error on a collection of several items; many R4 expressions apply it to one
          // (`Observation.component.value as Quantity`). R5 writes these as ofType(), which is what they mean:
          // evaluate that form instead, and list the case in notes.json.
          const rewritten = asToOfType(expression);
          const note = { type, example: f, param: param.code, expression, error: shortMessage(e) };
          if (/singleton on left side of 'as'/.test(e.message) && rewritten !== expression) {
            try {
              got = evaluateParameter(path.join(args.examples, f), param, rewritten);
              note.evaluated = rewritten;
            } catch (e2) {
              // The engine's union (`|`) compares its items for equality, and cannot compare a Quantity with a
              // comparator: evaluate the parts one by one and join them, leaving out exact (JSON) duplicates.
              note.error2 = shortMessage(e2);
              try {
                const seen = new Set();
                got = [];
                for (const part of splitTopLevel(rewritten)) {
                  for (const v of evaluateParameter(path.join(args.examples, f), param, part)) {
                    const key = JSON.stringify(v);
                    if (!seen.has(key)) { seen.add(key); got.push(v); }
                  }
                }
                note.evaluated = splitTopLevel(rewritten).join(' , ');
                note.evaluatedAs = 'parts';
              } catch (e3) {
                note.error3 = shortMessage(e3);
              }
            }
          }
          notes.push(note);
          if (!note.evaluated) errors.push(`${f} ${param.code} (${expression}): ${note.error}`);
        }
        if (got && got.length > 0) values[param.code] = got;
      }
      result[f] = values;
      total += 1;
    }
    // One example per line block, one parameter per line: deterministic and diffable.
    const lines = ['{'];
    const names = Object.keys(result);
    names.forEach((f, i) => {
      const codes = Object.keys(result[f]);
      if (codes.length === 0) {
        lines.push(`${JSON.stringify(f)}:{}${i + 1 < names.length ? ',' : ''}`);
        return;
      }
      lines.push(`${JSON.stringify(f)}:{`);
      codes.forEach((c, j) => {
        lines.push(`${JSON.stringify(c)}:${JSON.stringify(result[f][c])}${j + 1 < codes.length ? ',' : ''}`);
      });
      lines.push(`}${i + 1 < names.length ? ',' : ''}`);
    });
    lines.push('}');
    fs.writeFileSync(path.join(args.out, `${type}.json`), lines.join('\n') + '\n');
    process.stderr.write(`${type}: ${names.length} examples, ${applicable.length} parameters\n`);
  }
  fs.writeFileSync(path.join(args.out, 'notes.json'),
    '[\n' + notes.map((n) => JSON.stringify(n)).join(',\n') + (notes.length ? '\n' : '') + ']\n');
  for (const e of errors) process.stderr.write(`error: ${e}\n`);
  process.stderr.write(`oracle: ${total} examples written to ${args.out} with fhirpath ${fhirpath.version}` +
    ` (examples from ${args.examples}); ${notes.length - errors.length} evaluated as ofType(), ` +
    `${errors.length} evaluation errors\n`);
  if (errors.length > 0) process.exitCode = 1;
}

main();
