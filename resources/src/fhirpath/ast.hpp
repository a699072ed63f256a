#pragma once

// The compiled form of a FHIRPath expression; private to the engine.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "caduceus/resources/fhirpath.hpp"

namespace caduceus::resources::fhirpath {

enum class Op : std::uint8_t {
  kLiteral,     // literal
  kEmpty,       // {}
  kThis,        // $this
  kIndex,       // $index
  kTotal,       // $total
  kExternal,    // %name
  kIdentifier,  // a name at the start of a path: a type name matching the input, or a child of it
  kMember,      // children[0].name
  kIndexer,     // children[0][children[1]]
  kFunction,    // children[0] (or nullptr: the input).name(args = children[1..])
  kUnary,       // +/- children[0]
  kBinary,      // children[0] op children[1]
  kIs,          // children[0] is type
  kAs,          // children[0] as type
};

enum class BinOp : std::uint8_t {
  kMul,
  kDiv,
  kIntDiv,
  kMod,
  kAdd,
  kSub,
  kConcat,
  kUnion,
  kLt,
  kGt,
  kLe,
  kGe,
  kEq,
  kEquiv,
  kNe,
  kNotEquiv,
  kIn,
  kContains,
  kAnd,
  kOr,
  kXor,
  kImplies,
};

enum class Fn : std::uint8_t {
  kEmpty,
  kExists,
  kAll,
  kAllTrue,
  kAnyTrue,
  kAllFalse,
  kAnyFalse,
  kSubsetOf,
  kSupersetOf,
  kCount,
  kDistinct,
  kIsDistinct,
  kWhere,
  kSelect,
  kRepeat,
  kOfType,
  kFirst,
  kLast,
  kTail,
  kSkip,
  kTake,
  kSingle,
  kIntersect,
  kExclude,
  kUnion,
  kCombine,
  kIif,
  kToBoolean,
  kConvertsToBoolean,
  kToInteger,
  kConvertsToInteger,
  kToDecimal,
  kConvertsToDecimal,
  kToString,
  kConvertsToString,
  kToDate,
  kConvertsToDate,
  kToDateTime,
  kConvertsToDateTime,
  kToTime,
  kConvertsToTime,
  kToQuantity,
  kConvertsToQuantity,
  kIndexOf,
  kSubstring,
  kStartsWith,
  kEndsWith,
  kContains,
  kUpper,
  kLower,
  kReplace,
  kMatches,
  kReplaceMatches,
  kLength,
  kToChars,
  kTrim,
  kSplit,
  kJoin,
  kAbs,
  kCeiling,
  kExp,
  kFloor,
  kLn,
  kLog,
  kPower,
  kRound,
  kSqrt,
  kTruncate,
  kChildren,
  kDescendants,
  kTrace,
  kNow,
  kToday,
  kTimeOfDay,
  kNot,
  kIs,
  kAs,
  kExtension,
  kHasExtension,
  kResolve,
  kHasValue,
  kGetValue,
  kMemberOf,
  kConformsTo,
  kHtmlChecks,
  kAggregate,
};

struct TypeSpec {
  std::string ns;    // "FHIR", "System", or empty
  std::string name;  // "Patient", "String"
};

struct FhirPath::Node {
  Op op = Op::kLiteral;
  BinOp bin = BinOp::kAdd;
  Fn fn = Fn::kEmpty;
  bool upper = false;  // kIdentifier: starts with an upper-case letter (may name a type)
  int height = 1;      // of the subtree: bounded, so that evaluating and destroying it cannot exhaust the stack
  std::size_t pos = 0;
  std::string name;  // identifier, function or external constant name
  TypeSpec type;     // kIs, kAs, and the functions is/as/ofType
  Item literal;      // kLiteral
  std::vector<std::unique_ptr<FhirPath::Node>> children;
};

using Node = FhirPath::Node;

}  // namespace caduceus::resources::fhirpath
