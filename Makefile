# DeepMine — build, run, test. See README.md.
#
#   make            module (via apxs), plugins, deepminectl
#   make run        build + start Apache in the foreground on 127.0.0.1:$(PORT)
#   make test       lint + unit + integration tests
#   make bench      wrk benchmark (not a test)
#   make install    apxs -i + plugins + header + pkg-config file + a2enmod files

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
DEP_LIBS   := -lsqlite3 -ljansson -lsodium -lcurl -lcrypt -lpwquality
WARN       := -Wall -Wextra -Werror -Wno-unused-parameter
INCS       := -I$(CURDIR)/mod_deepmine/include -I$(CURDIR)/mod_deepmine/core \
              -I$(CURDIR)/mod_deepmine/http -I$(CURDIR)/$(B)
CFLAGS_PROJ := -std=gnu11 -O2 -g $(WARN) $(INCS) $(APR_CFLAGS)

CORE_SRC := $(sort $(wildcard mod_deepmine/core/*.c))
HTTP_SRC := $(sort $(wildcard mod_deepmine/http/*.c))
CORE_HDR := $(wildcard mod_deepmine/core/*.h) mod_deepmine/include/deepmine/plugin.h
HTTP_HDR := $(wildcard mod_deepmine/http/*.h)
SQL      := $(sort $(wildcard sql/*.sql))
MIG_C    := $(B)/migrations_gen.c
CORE_OBJ := $(patsubst mod_deepmine/core/%.c,$(B)/core/%.o,$(CORE_SRC)) $(B)/core/migrations_gen.o

PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/Makefile)))
MODULE   := $(B)/.libs/mod_deepmine.so
CLI      := $(B)/deepminectl

.PHONY: all deps run test unit integration lint format check-lognums bench install clean plugins \
        testplugins fuzz drivers

all: $(MODULE) $(CLI) plugins

deps:
	@bash scripts/deps.sh

$(MIG_C): $(SQL) scripts/embed-sql.sh
	@mkdir -p $(B)
	sh scripts/embed-sql.sh $(SQL) > $@.tmp && mv $@.tmp $@

$(B)/core/%.o: mod_deepmine/core/%.c $(CORE_HDR)
	@mkdir -p $(B)/core
	$(CC) $(CFLAGS_PROJ) -fPIC -c -o $@ $<

$(B)/core/migrations_gen.o: $(MIG_C) mod_deepmine/core/migrate.h
	@mkdir -p $(B)/core
	$(CC) $(CFLAGS_PROJ) -fPIC -c -o $@ $<

$(B)/libdmcore.a: $(CORE_OBJ)
	rm -f $@ && ar rcs $@ $^

# The module: core + http sources compiled and linked by apxs (libtool).
$(MODULE): $(CORE_SRC) $(HTTP_SRC) $(CORE_HDR) $(HTTP_HDR) $(MIG_C)
	@mkdir -p $(B)
	$(APXS) -c -o $(B)/mod_deepmine.la \
	  -Wc,-std=gnu11 -Wc,-Wall -Wc,-Wextra -Wc,-Werror -Wc,-Wno-unused-parameter \
	  -Wc,-fvisibility=hidden \
	  -Imod_deepmine/include -Imod_deepmine/core -Imod_deepmine/http -I$(B) \
	  $(CORE_SRC) $(HTTP_SRC) $(MIG_C) $(DEP_LIBS) >$(B)/apxs.log 2>&1 \
	  || { cat $(B)/apxs.log; exit 1; }
	@if grep -q 'warning' $(B)/apxs.log; then cat $(B)/apxs.log; exit 1; fi

$(CLI): mod_deepmine/cli/deepminectl.c $(B)/libdmcore.a $(CORE_HDR)
	$(CC) $(CFLAGS_PROJ) -o $@ $< $(B)/libdmcore.a $(APR_LIBS) $(DEP_LIBS)

plugins:
	@for d in $(PLUGIN_DIRS); do $(MAKE) -s -C $$d B=$(CURDIR)/$(B)/plugins \
	  INCLUDE=$(CURDIR)/mod_deepmine/include || exit 1; done

# ---- run ----
run: deps all
	@bash scripts/run.sh "$(VAR)" "$(PORT)"

# ---- tests ----
test: deps all lint check-lognums unit integration fuzz

testplugins:
	@$(MAKE) -s -C tests/plugins B=$(CURDIR)/$(B)/testplugins INCLUDE=$(CURDIR)/mod_deepmine/include

unit: $(B)/libdmcore.a plugins testplugins
	@$(MAKE) -s -C tests/unit B=$(CURDIR)/$(B) ROOT=$(CURDIR) \
	  CFLAGS_PROJ="$(CFLAGS_PROJ)" LIBS="$(APR_LIBS) $(DEP_LIBS)" run

# The program that drives plugins without Apache (tests/plugins/mailer_driver.c).
drivers: $(B)/libdmcore.a
	@$(MAKE) -s -C tests/unit B=$(CURDIR)/$(B) ROOT=$(CURDIR) \
	  CFLAGS_PROJ="$(CFLAGS_PROJ)" LIBS="$(APR_LIBS) $(DEP_LIBS)" driver

integration: all testplugins drivers
	cd tests/integration && DM_ROOT=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider

fuzz:
	@$(MAKE) -s -C tests/fuzz B=$(CURDIR)/$(B) ROOT=$(CURDIR) APR_CFLAGS="$(APR_CFLAGS)" \
	  LIBS="$(APR_LIBS) -ljansson -lsodium" run

check-lognums:
	@bash scripts/check-log-numbers.sh

LINT_SRC := $(CORE_SRC) $(HTTP_SRC) mod_deepmine/cli/deepminectl.c $(wildcard plugins/*/*.c)

lint: $(MIG_C)
	@bash scripts/lint.sh $(LINT_SRC) -- $(INCS) $(APR_CFLAGS) -I/usr/include/apache2

format:
	clang-format -i $(CORE_SRC) $(HTTP_SRC) $(CORE_HDR) $(HTTP_HDR) mod_deepmine/cli/*.c \
	  $(wildcard plugins/*/*.c tests/unit/*.c tests/plugins/*.c)

bench: deps all
	@bash scripts/bench.sh

# ---- install ----
# DESTDIR stages an install (packaging, tests); apxs -i cannot, so then the
# module is copied into the staged LIBEXECDIR instead.
APACHE_MODDIR := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)
install: all
	@if [ -z "$(DESTDIR)" ]; then $(APXS) -i -n deepmine $(MODULE); else \
	  install -D -m 0644 $(MODULE) $(DESTDIR)$(APACHE_MODDIR)/mod_deepmine.so; fi
	install -d $(DESTDIR)$(LIBDIR)/deepmine/plugins $(DESTDIR)$(INCLUDEDIR)/deepmine \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/apache2/mods-available
	install -m 0644 $(B)/plugins/*.so $(DESTDIR)$(LIBDIR)/deepmine/plugins/
	install -m 0644 mod_deepmine/include/deepmine/plugin.h $(DESTDIR)$(INCLUDEDIR)/deepmine/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  conf/deepmine-plugin.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/deepmine-plugin.pc
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/deepminectl
	sed -e 's|/usr/lib/apache2/modules|$(APACHE_MODDIR)|' conf/deepmine.load \
	  > $(DESTDIR)/etc/apache2/mods-available/deepmine.load
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' conf/deepmine.conf \
	  > $(DESTDIR)/etc/apache2/mods-available/deepmine.conf
	@echo "installed; enable with: a2enmod deepmine (see docs/operations.md)"

clean:
	rm -rf $(B)
	find mod_deepmine -name '*.lo' -o -name '*.slo' -o -name '*.o' -o -name '.libs' | xargs rm -rf
