# Everyday commands; CMake + Ninja underneath. Run as root on Debian 12 so that `deps` can install packages.
SHELL := /bin/bash
BUILD ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080
DB ?= sqlite:var/caduceus.db
RESOURCES ?= 1000000
SEARCH_DB ?= $(BUILD)/bench/search-$(RESOURCES).db

# Debian 12 packages the build, the tests and the benchmarks need (README: "Dependencies" says why each).
DEB_PACKAGES := g++ cmake ninja-build make libboost1.81-dev libboost-program-options1.81-dev rapidjson-dev \
  libsoci-dev libsoci-sqlite3-4.0 libsqlite3-dev libpq-dev libssl-dev libicu-dev libgtest-dev libgmock-dev \
  libbenchmark-dev wrk curl ca-certificates libjwt-dev libargon2-dev liboath-dev postgresql-15 \
  libhowardhinnant-date-dev nodejs libtcmalloc-minimal4

.PHONY: all deps js-deps configure build run test bench bench-search format clean

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != "0" ]; then \
	    echo "make deps: these Debian packages are missing:$$missing"; \
	    echo "make deps: run make as root, or install them: sudo apt-get install$$missing"; \
	    exit 1; \
	  fi; \
	  echo "make deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p var
	@echo "Caduceus: the FHIR R4 API will be at http://$(LISTEN)/fhir (data in $(DB))."
	@echo "  Try: curl http://$(LISTEN)/fhir/metadata   or, in another terminal: bash examples/tour.sh"
	@echo "  Sign-in: the first start creates the user 'admin' and prints its one-time password below (once; or set"
	@echo "  CADUCEUS_ADMIN_PASSWORD); it must be changed at the first sign-in. Other users: build/bin/caduceus admin user"
	@echo "  add|list|disable (server stopped; --help). The FHIR API itself stays open on this address until the SMART"
	@echo "  authorization server lands. Ctrl-C stops the server."
	$(BUILD)/bin/caduceus serve --listen $(LISTEN) --db $(DB)

# The SMART JavaScript client that the ctest smart_js.fhirclient drives (npm fhirclient, pinned by
# tests/smart_js/package.json and its lock file; `npm install`, not `npm ci`: npm 11 finds the lock file out of
# step over an optional peer of a dependency and refuses it; npm from Debian when the nodejs package does not bring it).
js-deps: deps
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends npm; }
	@[ -d tests/smart_js/node_modules/fhirclient ] || npm install --prefix tests/smart_js --no-audit --no-fund --no-save

test: build js-deps
	ctest --test-dir $(BUILD) -j $(JOBS) --output-on-failure --timeout 600

bench: build
	$(BUILD)/bin/caduceus_bench --benchmark_min_time=0.5
	CADUCEUS_BIN=$(BUILD)/bin/caduceus BARE_BIN=$(BUILD)/bin/bare_beast_server bash bench/load/run.sh

# Search under load over a generated store of RESOURCES (default a million) resources, made by caduceus_gen on the
# first run and kept in $(BUILD)/bench/ (4.6 GiB for the million; delete it when done). See README, Performance.
bench-search: build
	CADUCEUS_BIN=$(BUILD)/bin/caduceus GEN_BIN=$(BUILD)/bin/caduceus_gen \
	  RESOURCES=$(RESOURCES) DB=$(SEARCH_DB) bash bench/load/search.sh

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
