# DeepMine — build, run, test. See README.md.
#
#   make            module, plugins, deepminectl, dm-benchgen (core compiled once, all under build/)
#   make web        the pages: web/ built by esbuild into build/web/ (needs make deps)
#   make run        build + start Apache in the foreground on 127.0.0.1:$(PORT)
#   make test       lint + unit + integration tests
#   make demo       make run with a demo population (build/demo)
#   make bench      wrk benchmark (not a test)
#   make install    apxs -i + plugins + header + pkg-config file + a2enmod files
#   make deb        build/deepmine_<version>_<arch>.deb (docs/operations.md)

PORT    ?= 8080
VAR     ?= $(CURDIR)/var
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
APXS    ?= apxs
CC      ?= cc
B       := build

APR_CFLAGS := $(shell apr-1-config --cflags --cppflags --includes 2>/dev/null) \
              $(shell apu-1-config --includes 2>/dev/null)
APR_LIBS   := $(shell apr-1-config --link-ld --libs 2>/dev/null) \
              $(shell apu-1-config --link-ld --libs 2>/dev/null)
HTTPD_INC  := $(shell $(APXS) -q INCLUDEDIR 2>/dev/null)
PQ_CFLAGS  := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I$$(pg_config --includedir))
# libpq, libcurl and libcrypto are not linked: core/store/db_pg.c,
# core/plugins/http_client.c and core/base/libcrypto.c load them on first
# use (dlopen), so a process that never uses them does not map them
# (docs/decisions.md "Memory, fifth round"); their headers are still
# needed, and the packages at run time. Some unit tests call OpenSSL
# themselves (TEST_LIBS).
DEP_LIBS   := -lsqlite3 -ljansson -lsodium -lcrypt -lpwquality -lzstd
TEST_LIBS  := $(DEP_LIBS) -lcrypto
WARN       := -Wall -Wextra -Werror -Wno-unused-parameter
# One include root for core/ ("ledger/ledger.h"), plus the public plugin
# header and the generated sources.
INCS       := -I$(CURDIR)/mod_deepmine/include -I$(CURDIR)/mod_deepmine/core \
              -I$(CURDIR)/mod_deepmine/http -I$(CURDIR)/$(B)
# SAN=1 (make sanitize): the same sources under AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of their own.
SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_FLAGS  := $(if $(SAN),$(SANITIZERS))
OPT        := $(if $(SAN),-O1,-O2)
CFLAGS_PROJ := -std=gnu11 $(OPT) -g $(WARN) $(SAN_FLAGS) $(INCS) $(APR_CFLAGS) $(PQ_CFLAGS)
# Every object is position-independent (it goes into the module too) and
# hides its symbols (the module exports only its module record).
CFLAGS_OBJ := $(CFLAGS_PROJ) -fPIC -fvisibility=hidden
CFLAGS_HTTP := $(CFLAGS_OBJ) -I$(HTTPD_INC) -DLINUX -D_REENTRANT -D_GNU_SOURCE

CORE_SRC := $(sort $(shell find mod_deepmine/core -name '*.c'))
HTTP_SRC := $(sort $(shell find mod_deepmine/http -name '*.c'))
CLI_SRC  := $(sort $(wildcard mod_deepmine/cli/*.c))
# dm-benchgen, the bench data generator: its own files and the command
# engine it shares with deepminectl (cli/cmd.c).
BENCH_SRC := $(sort $(wildcard mod_deepmine/cli/bench/*.c))
SQL      := $(sort $(wildcard sql/*.sql sql/pg/*.sql))
MIG_C    := $(B)/migrations_gen.c
O        := $(B)/obj
CORE_OBJ := $(patsubst %.c,$(O)/%.o,$(CORE_SRC)) $(O)/migrations_gen.o
HTTP_OBJ := $(patsubst %.c,$(O)/%.o,$(HTTP_SRC))
CLI_OBJ  := $(patsubst %.c,$(O)/%.o,$(CLI_SRC))
BENCH_OBJ := $(patsubst %.c,$(O)/%.o,$(BENCH_SRC)) $(O)/mod_deepmine/cli/cmd.o

PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/Makefile)))
MODULE   := $(B)/mod_deepmine.so
CLI      := $(B)/deepminectl
BENCHGEN := $(B)/dm-benchgen

.PHONY: all deps run demo test unit integration lint format check-lognums check-includes bench \
        install clean plugins testplugins fuzz drivers sanitize web deb

all: $(MODULE) $(CLI) $(BENCHGEN) plugins

deps:
	@bash scripts/deps.sh

# Every output is written under a temporary name and renamed into place, so
# two builds of one tree never leave a half-written file for the other.
TMP = $@.tmp$$$$

$(MIG_C): $(SQL) scripts/embed-sql.sh
	@mkdir -p $(@D)
	sh scripts/embed-sql.sh $(SQL) > $(TMP) && mv -f $(TMP) $@

# Header dependencies are tracked (-MMD -MP): touching one .c recompiles one
# object, touching a header recompiles what includes it.
$(O)/mod_deepmine/core/%.o: mod_deepmine/core/%.c
	@mkdir -p $(@D)
	@echo '  CC    $<'; $(CC) $(CFLAGS_OBJ) -MMD -MP -MT $@ -MF $(TMP).d -c -o $(TMP) $< && mv -f $(TMP).d $(@:.o=.d) && mv -f $(TMP) $@

$(O)/mod_deepmine/http/%.o: mod_deepmine/http/%.c
	@mkdir -p $(@D)
	@echo '  CC    $<'; $(CC) $(CFLAGS_HTTP) -MMD -MP -MT $@ -MF $(TMP).d -c -o $(TMP) $< && mv -f $(TMP).d $(@:.o=.d) && mv -f $(TMP) $@

$(O)/mod_deepmine/cli/%.o: mod_deepmine/cli/%.c
	@mkdir -p $(@D)
	@echo '  CC    $<'; $(CC) $(CFLAGS_OBJ) -MMD -MP -MT $@ -MF $(TMP).d -c -o $(TMP) $< && mv -f $(TMP).d $(@:.o=.d) && mv -f $(TMP) $@

$(O)/migrations_gen.o: $(MIG_C)
	@mkdir -p $(@D)
	@echo '  CC    $<'; $(CC) $(CFLAGS_OBJ) -MMD -MP -MT $@ -MF $(TMP).d -c -o $(TMP) $< && mv -f $(TMP).d $(@:.o=.d) && mv -f $(TMP) $@

-include $(CORE_OBJ:.o=.d) $(HTTP_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)

# core/, compiled once, linked into the module, deepminectl and the tests.
$(B)/libdmcore.a: $(CORE_OBJ)
	@echo '  AR    $@'; rm -f $(TMP) && ar rcs $(TMP) $^ && mv -f $(TMP) $@

# The module: the http/ objects and core, one shared object for Apache.
$(MODULE): $(HTTP_OBJ) $(B)/libdmcore.a
	@echo '  LD    $@'; $(CC) -shared $(SAN_FLAGS) -o $(TMP) $(HTTP_OBJ) $(B)/libdmcore.a $(DEP_LIBS) && mv -f $(TMP) $@

$(CLI): $(CLI_OBJ) $(B)/libdmcore.a
	@echo '  LD    $@'; $(CC) $(SAN_FLAGS) -o $(TMP) $(CLI_OBJ) $(B)/libdmcore.a $(APR_LIBS) $(DEP_LIBS) && mv -f $(TMP) $@

# (its objects come from the cli/ rule above: % spans the bench/ folder)
$(BENCHGEN): $(BENCH_OBJ) $(B)/libdmcore.a
	@echo '  LD    $@'; $(CC) $(SAN_FLAGS) -o $(TMP) $(BENCH_OBJ) $(B)/libdmcore.a $(APR_LIBS) $(DEP_LIBS) && mv -f $(TMP) $@

plugins:
	@for d in $(PLUGIN_DIRS); do $(MAKE) -s -C $$d B=$(CURDIR)/$(B)/plugins \
	  INCLUDE=$(CURDIR)/mod_deepmine/include || exit 1; done

# ---- the pages (docs/ui.md) ----
# web/ (sources) -> build/web/ (what Apache serves at /): one esbuild run
# from node_modules, which `make deps` installs from package-lock.json.
WEB_SRC := $(shell find web -type f 2>/dev/null) package-lock.json scripts/build-web.mjs
web: $(B)/web/index.html
$(B)/web/index.html: $(WEB_SRC)
	@test -x node_modules/.bin/esbuild || { echo "web: node_modules missing: run make deps"; exit 1; }
	@node scripts/build-web.mjs

# ---- run ----
run: deps all web
	@bash scripts/run.sh "$(VAR)" "$(PORT)"

# make run with a demo population on a fresh VAR (docs/ui.md "Demo data")
DEMO_VAR ?= $(CURDIR)/build/demo
demo: deps all web
	@bash scripts/demo.sh "$(DEMO_VAR)" "$(PORT)"

# ---- tests ----
test: deps all web lint check-lognums check-includes unit sanitize integration fuzz

testplugins:
	@$(MAKE) -s -C tests/plugins B=$(CURDIR)/$(B)/testplugins INCLUDE=$(CURDIR)/mod_deepmine/include

# PLUG_B: where the unit tests find the built plugins (the sanitizer build
# loads the ordinary ones: a plugin is a separate shared object).
PLUG_B ?= $(CURDIR)/$(B)
unit: $(B)/libdmcore.a plugins testplugins
	@$(MAKE) -s -C tests/unit B=$(CURDIR)/$(B) PLUG_B=$(PLUG_B) ROOT=$(CURDIR) \
	  CFLAGS_PROJ="$(CFLAGS_PROJ)" LIBS="$(SAN_FLAGS) $(APR_LIBS) $(TEST_LIBS)" run

# The unit tests again, built with clang under ASan + UBSan in build/san;
# any report fails the run. detect_leaks=0: APR pools and process-wide caches
# are freed at exit by design, not leaks; use_sigaltstack=0: the runtime's
# alternate signal stack trips over APR threads exiting (a runtime quirk).
SAN_ENV := ASAN_OPTIONS=detect_leaks=0:use_sigaltstack=0:abort_on_error=0:halt_on_error=1 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize: plugins testplugins
	@$(SAN_ENV) $(MAKE) -s B=$(B)/san SAN=1 CC=clang PLUG_B=$(CURDIR)/$(B) unit

# The program that drives plugins without Apache (tests/plugins/mailer_driver.c).
drivers: $(B)/libdmcore.a
	@$(MAKE) -s -C tests/unit B=$(CURDIR)/$(B) ROOT=$(CURDIR) \
	  CFLAGS_PROJ="$(CFLAGS_PROJ)" LIBS="$(APR_LIBS) $(TEST_LIBS)" driver

# The suites that run a second time on PostgreSQL (DM_ENGINE=postgresql: the
# fixtures start a throwaway cluster; docs/decisions.md "PostgreSQL driver").
# test_51_multinode (two nodes on one PostgreSQL and one memcached) always
# runs on PostgreSQL, so it is in the first run and not here.
PG_SUITES ?= test_06_ratelimit_memcache.py test_07_members.py test_08_admin.py test_09_ledger.py test_10_sandbox.py \
             test_11_orders.py test_12_commissions.py test_13_withdrawals.py test_15_email.py \
             test_16_accrual.py test_17_cron.py test_18_accrual_crash.py test_19_refunds.py test_21_money_rules.py \
             test_22_accrual_term.py test_30_payments_core.py test_41_kyc.py
integration: all testplugins drivers web
	cd tests/integration && DM_ROOT=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider
	cd tests/integration && DM_ENGINE=postgresql DM_ROOT=$(CURDIR) /usr/bin/python3 -m pytest -q \
	  -p no:cacheprovider $(PG_SUITES)

# libFuzzer targets, built with clang under ASan + UBSan (tests/fuzz/Makefile).
fuzz:
	@$(MAKE) -s -C tests/fuzz B=$(CURDIR)/$(B) ROOT=$(CURDIR) APR_CFLAGS="$(APR_CFLAGS)" \
	  LIBS="$(APR_LIBS) -ljansson -lsodium" run

check-lognums:
	@bash scripts/check-log-numbers.sh

check-includes:
	@bash scripts/check-includes.sh

FMT_SRC  := $(shell find mod_deepmine plugins tests/unit tests/plugins tests/fuzz -name '*.[ch]')
LINT_SRC := $(CORE_SRC) $(HTTP_SRC) $(CLI_SRC) $(BENCH_SRC) $(wildcard plugins/*/*.c)

lint: $(MIG_C) check-includes
	@bash scripts/lint.sh $(LINT_SRC) -- $(INCS) $(APR_CFLAGS) $(PQ_CFLAGS) -I$(HTTPD_INC) -- $(FMT_SRC)

format:
	clang-format -i $(FMT_SRC)

bench: deps all
	@bash scripts/bench.sh

# ---- install ----
# DESTDIR stages an install (packaging, tests); apxs -i cannot, so then the
# module is copied into the staged LIBEXECDIR instead.
APACHE_MODDIR := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)
WEBDIR  ?= $(PREFIX)/share/deepmine/web
install: all web
	@if [ -z "$(DESTDIR)" ]; then $(APXS) -i -n deepmine $(MODULE); else \
	  install -D -m 0644 $(MODULE) $(DESTDIR)$(APACHE_MODDIR)/mod_deepmine.so; fi
	install -d $(DESTDIR)$(LIBDIR)/deepmine/plugins $(DESTDIR)$(INCLUDEDIR)/deepmine \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/apache2/mods-available
	install -m 0644 $(B)/plugins/*.so $(DESTDIR)$(LIBDIR)/deepmine/plugins/
	install -m 0644 mod_deepmine/include/deepmine/plugin.h mod_deepmine/include/deepmine/plugin_util.h \
	  $(DESTDIR)$(INCLUDEDIR)/deepmine/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  conf/deepmine-plugin.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/deepmine-plugin.pc
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/deepminectl
	sed -e 's|/usr/lib/apache2/modules|$(APACHE_MODDIR)|' conf/deepmine.load \
	  > $(DESTDIR)/etc/apache2/mods-available/deepmine.load
	install -d $(DESTDIR)$(WEBDIR)
	cp -R $(B)/web/. $(DESTDIR)$(WEBDIR)/
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@WEBDIR@|$(WEBDIR)|g' conf/deepmine.conf \
	  > $(DESTDIR)/etc/apache2/mods-available/deepmine.conf
	install -d $(DESTDIR)/etc/deepmine/legal
	install -m 0644 conf/legal/*.md $(DESTDIR)/etc/deepmine/legal/
	@echo "installed; enable with: a2enmod deepmine (see docs/operations.md)"

# ---- the Debian package (scripts/build-deb.sh, packaging/deb/) ----
deb: all web
	@bash scripts/build-deb.sh

clean:
	rm -rf $(B)
