#pragma once

#include <memory>

#include "caduceus/resources/store/users.hpp"

namespace soci {
class session;
}

namespace caduceus::resources {

// The user table through SOCI on an open session (the store's writer, inside its transaction). The SQL is
// portable (SQLite and PostgreSQL): the one place where the table is read and written.
std::unique_ptr<UserRows> make_user_rows(soci::session& sql);

}  // namespace caduceus::resources
