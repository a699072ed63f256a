#include "caduceus/server/auth/scopes.hpp"

#include <cctype>

namespace caduceus::server::auth {

using fhir::ErrorKind;

namespace {
bool is_type_name(std::string_view s) {
  if (s.empty() || !std::isupper(static_cast<unsigned char>(s.front()))) return false;
  for (char c : s)
    if (!std::isalpha(static_cast<unsigned char>(c))) return false;
  return true;
}
}  // namespace

fhir::Result<ResourceScope> parse_resource_scope(std::string_view scope) {
  ResourceScope out;
  out.text = std::string(scope);
  auto slash = scope.find('/');
  auto dot = scope.find('.', slash == std::string_view::npos ? 0 : slash);
  if (slash == std::string_view::npos || dot == std::string_view::npos)
    return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + out.text + "' is not a SMART resource scope", "scope");
  out.context = std::string(scope.substr(0, slash));
  if (out.context != "system" && out.context != "user" && out.context != "patient")
    return fhir::fail(ErrorKind::kInvalid, "invalid",
                      "'" + out.text + "': the context must be patient/, user/ or system/", "scope");
  out.type = std::string(scope.substr(slash + 1, dot - slash - 1));
  if (out.type != "*" && !is_type_name(out.type))
    return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + out.text + "': '" + out.type + "' is not a resource type",
                      "scope");
  std::string_view what = scope.substr(dot + 1);
  if (auto q = what.find('?'); q != std::string_view::npos) {
    out.query = std::string(what.substr(q + 1));
    what = what.substr(0, q);
    if (out.query.empty() || what == "read" || what == "write" || what == "*" || out.type == "*")
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "'" + out.text + "': a query comes after the letters of a SMART v2 scope on one resource type",
                        "scope");
  }
  if (what == "read") {
    out.permissions = kRead | kSearch;
  } else if (what == "write") {
    out.permissions = kCreate | kUpdate | kDelete;
  } else if (what == "*") {
    out.permissions = kAll;
  } else {
    // v2: a non-empty subsequence of "cruds", in that order.
    static constexpr std::string_view kLetters = "cruds";
    static constexpr std::uint8_t kBits[] = {kCreate, kRead, kUpdate, kDelete, kSearch};
    std::size_t next = 0;
    for (char c : what) {
      auto at = kLetters.find(c, next);
      if (at == std::string_view::npos) {
        out.permissions = 0;
        break;
      }
      out.permissions |= kBits[at];
      next = at + 1;
    }
    if (what.empty() || out.permissions == 0)
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "'" + out.text + "': after the type comes read, write, * or letters of cruds in that order",
                        "scope");
  }
  return out;
}

std::vector<std::string> split_scopes(std::string_view scopes) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start < scopes.size();) {
    std::size_t space = scopes.find(' ', start);
    if (space == std::string_view::npos) space = scopes.size();
    if (space > start) out.emplace_back(scopes.substr(start, space - start));
    start = space + 1;
  }
  return out;
}

bool covers(const ResourceScope& granted, const ResourceScope& requested) {
  // A granular grant covers only the same query (a narrower search is not worked out).
  return granted.context == requested.context && (granted.type == "*" || granted.type == requested.type) &&
         (granted.query.empty() || granted.query == requested.query) &&
         (granted.permissions & requested.permissions) == requested.permissions;
}

bool Grant::allows(std::string_view type, std::uint8_t permissions) const noexcept {
  std::uint8_t have = 0;
  for (const ResourceScope& s : scopes_)
    if (s.type == "*" || s.type == type) have |= s.permissions;
  return (have & permissions) == permissions;
}

std::string permission_letters(std::uint8_t permissions) {
  std::string out;
  if (permissions & kCreate) out += 'c';
  if (permissions & kRead) out += 'r';
  if (permissions & kUpdate) out += 'u';
  if (permissions & kDelete) out += 'd';
  if (permissions & kSearch) out += 's';
  return out;
}

}  // namespace caduceus::server::auth
