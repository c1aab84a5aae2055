# vfio-bind: build and install (GNU make).
#
#   make                  release binary and completions (in target/ or $CARGO_TARGET_DIR)
#   make install          install into $(DESTDIR); builds nothing that is built already,
#                         so `make && sudo make install` runs cargo as the user only
#   make uninstall        remove what install put there, except the config
#   make check            every test (tests/run.sh)
#   make bench            the benchmarks (BENCHMARKS.md); make bench-quick: CI's short run
#   make clean
#
# Packagers: make install DESTDIR=debian/tmp PREFIX=/usr. Man pages are installed
# uncompressed (dh_installman and friends compress them).

PREFIX         ?= /usr
DESTDIR        ?=
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
SYSCONFDIR     ?= /etc
MODULESLOADDIR ?= $(PREFIX)/lib/modules-load.d
BASHCOMPDIR    ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR     ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR    ?= $(PREFIX)/share/fish/vendor_completions.d
# The initramfs integrations, where each generator reads them whatever PREFIX is (the
# files are inert where the family is not installed).
INITRAMFSTOOLSDIR ?= /usr/share/initramfs-tools
DRACUTMODDIR   ?= /usr/lib/dracut/modules.d
INITCPIODIR    ?= /usr/lib/initcpio
# libvirt's QEMU hook directory (libvirt >= 6.5 runs every executable in it).
LIBVIRTHOOKDIR ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d
PKG_CONFIG     ?= pkg-config
# For PREFIX=/usr, systemd's own answer where pkg-config has one (Debian 12 says
# /lib/systemd/system); otherwise, and as the fallback, $(PREFIX)/lib/systemd/system.
ifeq ($(origin SYSTEMDUNITDIR),undefined)
ifeq ($(PREFIX),/usr)
SYSTEMDUNITDIR := $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null)
endif
SYSTEMDUNITDIR := $(or $(SYSTEMDUNITDIR),$(PREFIX)/lib/systemd/system)
endif

CARGO      ?= cargo
CARGOFLAGS ?= --locked
INSTALL    ?= install
# Cargo's output directory (cargo reads CARGO_TARGET_DIR from the environment too).
CARGO_TARGET_DIR ?= target
# The binary to install and to generate the completions with. Point it at a binary that
# is built already (tests/install.rs does) and make runs no cargo at all.
VFIO_BIND_BIN ?= $(CARGO_TARGET_DIR)/release/vfio-bind
# Where the generated completion scripts go.
COMPDIR ?= $(CARGO_TARGET_DIR)/completions

COMPLETIONS := $(COMPDIR)/vfio-bind.bash $(COMPDIR)/_vfio-bind $(COMPDIR)/vfio-bind.fish
SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock

.PHONY: all build completions install uninstall check bench bench-quick clean

all: build

build: $(VFIO_BIND_BIN) completions

completions: $(COMPLETIONS)

# Only the default binary is built here; cargo decides what to recompile.
$(CARGO_TARGET_DIR)/release/vfio-bind: $(SOURCES)
	$(CARGO) build --release $(CARGOFLAGS) --target-dir $(CARGO_TARGET_DIR)
	touch $@

$(COMPDIR)/vfio-bind.bash: COMPSHELL = bash
$(COMPDIR)/_vfio-bind: COMPSHELL = zsh
$(COMPDIR)/vfio-bind.fish: COMPSHELL = fish
$(COMPLETIONS): $(VFIO_BIND_BIN)
	@mkdir -p $(@D)
	$(VFIO_BIND_BIN) completions $(COMPSHELL) > $@.tmp
	mv $@.tmp $@

# install_sed MODE, SOURCE, DEST: install a file that names the binary by its path
# (/usr/sbin/vfio-bind in dist/), pointed at $(SBINDIR).
define install_sed
	$(INSTALL) -d "$(DESTDIR)$(dir $(3))"
	sed 's|/usr/sbin/vfio-bind|$(SBINDIR)/vfio-bind|g' $(2) > "$(DESTDIR)$(3)"
	chmod $(1) "$(DESTDIR)$(3)"
endef

# The example config binds nothing; install never replaces the one the admin has.
install: $(VFIO_BIND_BIN) $(COMPLETIONS)
	$(INSTALL) -Dm755 $(VFIO_BIND_BIN) "$(DESTDIR)$(SBINDIR)/vfio-bind"
	$(INSTALL) -d "$(DESTDIR)$(SYSTEMDUNITDIR)"
	sed 's|/usr/sbin/vfio-bind|$(SBINDIR)/vfio-bind|g' dist/systemd/vfio-bind.service \
		> "$(DESTDIR)$(SYSTEMDUNITDIR)/vfio-bind.service"
	chmod 0644 "$(DESTDIR)$(SYSTEMDUNITDIR)/vfio-bind.service"
	$(call install_sed,644,dist/systemd/vfio-bind-initrd.service,$(SYSTEMDUNITDIR)/vfio-bind-initrd.service)
	$(INSTALL) -Dm644 dist/modules-load.d/vfio-bind.conf "$(DESTDIR)$(MODULESLOADDIR)/vfio-bind.conf"
	$(call install_sed,755,dist/initramfs-tools/hooks/vfio-bind,$(INITRAMFSTOOLSDIR)/hooks/vfio-bind)
	$(call install_sed,755,dist/initramfs-tools/scripts/init-top/00-vfio-bind,$(INITRAMFSTOOLSDIR)/scripts/init-top/00-vfio-bind)
	$(call install_sed,755,dist/dracut/90vfio-bind/module-setup.sh,$(DRACUTMODDIR)/90vfio-bind/module-setup.sh)
	$(call install_sed,755,dist/dracut/90vfio-bind/vfio-bind-cmdline.sh,$(DRACUTMODDIR)/90vfio-bind/vfio-bind-cmdline.sh)
	$(call install_sed,644,dist/systemd/vfio-bind-initrd.service,$(DRACUTMODDIR)/90vfio-bind/vfio-bind-initrd.service)
	$(call install_sed,644,dist/initcpio/install/vfio-bind,$(INITCPIODIR)/install/vfio-bind)
	$(call install_sed,644,dist/initcpio/install/sd-vfio-bind,$(INITCPIODIR)/install/sd-vfio-bind)
	$(call install_sed,644,dist/initcpio/hooks/vfio-bind,$(INITCPIODIR)/hooks/vfio-bind)
	$(call install_sed,755,dist/libvirt/qemu.d/vfio-bind,$(LIBVIRTHOOKDIR)/vfio-bind)
	$(INSTALL) -Dm644 man/vfio-bind.8 "$(DESTDIR)$(MANDIR)/man8/vfio-bind.8"
	$(INSTALL) -Dm644 man/vfio-bind.toml.5 "$(DESTDIR)$(MANDIR)/man5/vfio-bind.toml.5"
	$(INSTALL) -Dm644 $(COMPDIR)/vfio-bind.bash "$(DESTDIR)$(BASHCOMPDIR)/vfio-bind"
	$(INSTALL) -Dm644 $(COMPDIR)/_vfio-bind "$(DESTDIR)$(ZSHCOMPDIR)/_vfio-bind"
	$(INSTALL) -Dm644 $(COMPDIR)/vfio-bind.fish "$(DESTDIR)$(FISHCOMPDIR)/vfio-bind.fish"
	@conf="$(DESTDIR)$(SYSCONFDIR)/vfio-bind.toml"; \
	if [ -e "$$conf" ] || [ -L "$$conf" ]; then \
		echo "keeping $$conf"; \
	else \
		echo "$(INSTALL) -Dm644 dist/etc/vfio-bind.toml $$conf"; \
		$(INSTALL) -Dm644 dist/etc/vfio-bind.toml "$$conf"; \
	fi

uninstall:
	rm -f "$(DESTDIR)$(SBINDIR)/vfio-bind" \
		"$(DESTDIR)$(SYSTEMDUNITDIR)/vfio-bind.service" \
		"$(DESTDIR)$(SYSTEMDUNITDIR)/vfio-bind-initrd.service" \
		"$(DESTDIR)$(INITRAMFSTOOLSDIR)/hooks/vfio-bind" \
		"$(DESTDIR)$(INITRAMFSTOOLSDIR)/scripts/init-top/00-vfio-bind" \
		"$(DESTDIR)$(INITCPIODIR)/install/vfio-bind" \
		"$(DESTDIR)$(INITCPIODIR)/install/sd-vfio-bind" \
		"$(DESTDIR)$(INITCPIODIR)/hooks/vfio-bind" \
		"$(DESTDIR)$(LIBVIRTHOOKDIR)/vfio-bind" \
		"$(DESTDIR)$(MODULESLOADDIR)/vfio-bind.conf" \
		"$(DESTDIR)$(MANDIR)/man8/vfio-bind.8" \
		"$(DESTDIR)$(MANDIR)/man5/vfio-bind.toml.5" \
		"$(DESTDIR)$(BASHCOMPDIR)/vfio-bind" \
		"$(DESTDIR)$(ZSHCOMPDIR)/_vfio-bind" \
		"$(DESTDIR)$(FISHCOMPDIR)/vfio-bind.fish"
	rm -rf "$(DESTDIR)$(DRACUTMODDIR)/90vfio-bind"
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/vfio-bind.toml (remove it by hand if you want)"

check:
	tests/run.sh

# Benchmarks (BENCHMARKS.md): scale on generated hosts, and the real kernel in a guest.
bench:
	$(CARGO) bench $(CARGOFLAGS) --bench scale
	$(CARGO) bench $(CARGOFLAGS) --bench state
	bench/realkernel.sh

bench-quick:
	$(CARGO) bench $(CARGOFLAGS) --bench scale -- --quick
	$(CARGO) bench $(CARGOFLAGS) --bench state -- --quick
	bench/realkernel.sh --quick

clean:
	$(CARGO) clean --target-dir $(CARGO_TARGET_DIR)
	rm -rf $(COMPDIR)
