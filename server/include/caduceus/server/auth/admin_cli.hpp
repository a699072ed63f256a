#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace caduceus::server::auth {

// `caduceus admin user add|list|disable|enable|totp ...` (args: what follows `admin user`). Reads a password
// from `in` (without echo on a terminal), writes results to `out` and errors to `err`. Returns the exit code:
// 0 done, 1 refused or failed, 2 bad usage.
int run_admin_user(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err);

}  // namespace caduceus::server::auth
