# sshmd5: build, install and uninstall (README "Install").
#
#   make                        build bin/ssh-md5-proxy and bin/sshd-md5-socket
#                               (--version: scripts/version, or VERSION=...)
#   sudo make install           install under PREFIX (default /usr/local)
#   make install DESTDIR=/tmp/root PREFIX=/usr    stage for a package
#   sudo make uninstall         remove what install put (same PREFIX etc.)
#   make man                    regenerate man/*.1 and man/*.8 from man/*.md
#   sudo make test              scripts/test (needs root)
#
# Where install puts things (each can be set on the command line):
#   BINDIR   $(PREFIX)/bin                  ssh-md5-proxy
#   SBINDIR  $(PREFIX)/sbin                 sshd-md5-socket
#   MANDIR   $(PREFIX)/share/man            man1/ssh-md5-proxy.1, man8/sshd-md5-socket.8
#   UNITDIR  $(PREFIX)/lib/systemd/system   contrib/systemd/*.service
#   DOCDIR   $(PREFIX)/share/doc/sshmd5     README.md, sshd-md5-2222.conf
#
# UNITDIR: systemd reads units from /usr/local/lib/systemd/system as well
# as /usr/lib/systemd/system (systemd 252 on Debian 12: see
# "systemd-analyze unit-paths"), so the default works for PREFIX=/usr/local
# and PREFIX=/usr. Where "systemd-analyze unit-paths" does not list it,
# pass UNITDIR=/etc/systemd/system.
#
# The units name /usr/sbin/sshd-md5-socket; the installed copies name
# $(SBINDIR)/sshd-md5-socket instead, so they run the installed binary.
# After installing units, run "systemctl daemon-reload".

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
SBINDIR = $(PREFIX)/sbin
MANDIR = $(PREFIX)/share/man
UNITDIR = $(PREFIX)/lib/systemd/system
DOCDIR = $(PREFIX)/share/doc/sshmd5

# Where "make build" writes the binaries.
OUT = bin
# The go command; /usr/local/go/bin/go when it is not on PATH (sudo).
GO = $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

# The version the programs report (--version): scripts/version, as
# packaging/build-deb uses it. Set VERSION=... to override; empty (no git),
# they report the Go module's build info instead.
VERSION := $(shell scripts/version 2>/dev/null)
LDFLAGS = -X github.com/sshmd5/sshmd5/internal/version.Version=$(VERSION)

GOFILES := $(shell find cmd internal -name '*.go' -not -name '*_test.go') go.mod go.sum
UNITS := $(wildcard contrib/systemd/*.service)
MANPAGES := man/ssh-md5-proxy.1 man/sshd-md5-socket.8

.PHONY: all build install uninstall man test clean FORCE

all: build

build: $(OUT)/ssh-md5-proxy $(OUT)/sshd-md5-socket

$(OUT)/ssh-md5-proxy $(OUT)/sshd-md5-socket: $(GOFILES) $(OUT)/.version
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$(@F)

# Rewritten when the version changes, so that a new commit rebuilds the
# binaries even when no Go file changed.
$(OUT)/.version: FORCE
	@mkdir -p $(OUT); [ "$$(cat $@ 2>/dev/null)" = '$(VERSION)' ] || echo '$(VERSION)' > $@

install: build
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(SBINDIR)' \
		'$(DESTDIR)$(MANDIR)/man1' '$(DESTDIR)$(MANDIR)/man8' \
		'$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(DOCDIR)'
	install -m 0755 $(OUT)/ssh-md5-proxy '$(DESTDIR)$(BINDIR)/ssh-md5-proxy'
	install -m 0755 $(OUT)/sshd-md5-socket '$(DESTDIR)$(SBINDIR)/sshd-md5-socket'
	install -m 0644 man/ssh-md5-proxy.1 '$(DESTDIR)$(MANDIR)/man1/ssh-md5-proxy.1'
	install -m 0644 man/sshd-md5-socket.8 '$(DESTDIR)$(MANDIR)/man8/sshd-md5-socket.8'
	for u in $(UNITS); do \
		dst='$(DESTDIR)$(UNITDIR)'/$${u##*/}; \
		sed -e '/^Exec/s|/usr/sbin/sshd-md5-socket|$(SBINDIR)/sshd-md5-socket|' "$$u" > "$$dst" && \
		chmod 0644 "$$dst" || exit 1; \
	done
	install -m 0644 README.md contrib/systemd/sshd-md5-2222.conf '$(DESTDIR)$(DOCDIR)/'

uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/ssh-md5-proxy' '$(DESTDIR)$(SBINDIR)/sshd-md5-socket' \
		'$(DESTDIR)$(MANDIR)/man1/ssh-md5-proxy.1' '$(DESTDIR)$(MANDIR)/man8/sshd-md5-socket.8' \
		'$(DESTDIR)$(DOCDIR)/README.md' '$(DESTDIR)$(DOCDIR)/sshd-md5-2222.conf'
	for u in $(UNITS); do rm -f '$(DESTDIR)$(UNITDIR)'/$${u##*/}; done
	if [ -d '$(DESTDIR)$(DOCDIR)' ]; then rmdir --ignore-fail-on-non-empty '$(DESTDIR)$(DOCDIR)'; fi

# The generated pages are committed; this brings them up to date with
# their sources (the tests fail while they are not).
man:
	$(GO) run man/gen.go

test:
	scripts/test

clean:
	rm -f $(OUT)/ssh-md5-proxy $(OUT)/sshd-md5-socket $(OUT)/.version
