#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace caduceus::server {

// `caduceus migrate --from URL --to URL [--force] [--batch N]` (args after "migrate"): copies a whole store to
// another database (caduceus/resources/store/copy.hpp), progress on `err` (a line redrawn in place when
// it is std::cerr on a terminal), the summary on `out`. Exit status: 0 copied, 1 failed (target left as it was), 2 bad
// usage.
int run_migrate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace caduceus::server
