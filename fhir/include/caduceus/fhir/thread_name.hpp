#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace caduceus {

// Names the calling thread as `top -H`, `ps -L`, perf and gdb show it ("cad-" and what it does). Linux keeps 15
// bytes of a name: longer ones are cut there.
inline void name_this_thread(std::string_view name) {
  std::string n(name.substr(0, 15));
  (void)pthread_setname_np(pthread_self(), n.c_str());
}

}  // namespace caduceus
