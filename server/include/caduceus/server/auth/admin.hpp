#pragma once

#include <string>
#include <vector>

namespace caduceus::server::auth {

// `caduceus admin client add|list|remove` and `caduceus admin key rotate|list|remove` (args after "admin").
// Returns the process exit code (0 done, 1 failed, 2 usage).
int admin_command(const std::vector<std::string>& args);

}  // namespace caduceus::server::auth
