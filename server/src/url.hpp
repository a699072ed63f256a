#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace caduceus::server {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Percent-decodes (and '+' as space when form). nullopt on a malformed escape or invalid UTF-8 is not checked.
std::optional<std::string> percent_decode(std::string_view text, bool form);
std::string percent_encode(std::string_view text);

// Splits "a=1&b=2" into decoded pairs. nullopt on a malformed escape.
std::optional<QueryParams> parse_query(std::string_view query);

// The value of the first parameter of that name.
const std::string* find_param(const QueryParams& params, std::string_view name);

}  // namespace caduceus::server
