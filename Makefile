# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
.PHONY: demo demo-host test test-quick bench bench-host build deb setup install uninstall clean

demo:            ## one real boot of a Debian guest unlocked by vault-luks (QEMU, a few minutes)
	tests/vm/demo.sh

demo-host:       ## the unlock on this host, no VM (seconds)
	scripts/demo-host.sh

test:            ## everything, VM boots included (what CI runs)
	scripts/test.sh

test-quick:      ## everything but the VM boots
	VAULT_LUKS_SKIP_VM=1 scripts/test.sh

bench:           ## boots with and without vault-luks side by side (VM, ~25 min), then bench-host
	@# Every part runs even when one before it reports a missed target (exit 1); the status is make's.
	benches/boot.sh; status=$$?; $(MAKE) --no-print-directory bench-host && exit $$status

bench-host:      ## what vault-luks and a keyslot cost on this host (no VM; a minute)
	@# keyslot.sh runs even when unlock-host.sh reports a missed target (exit 1); that status is make's.
	benches/unlock-host.sh; status=$$?; benches/keyslot.sh && exit $$status

build:
	scripts/setup.sh
	scripts/build.sh

deb:             ## the Debian package: target/deb/vault-luks_VERSION_amd64.deb, lintian clean
	scripts/setup.sh
	scripts/deb.sh

setup:
	scripts/setup.sh

install:         ## on the machine to protect: binary, hooks/module, shutdown unit, initramfs
	scripts/install.sh

uninstall:
	scripts/install.sh --uninstall

clean:
	cargo clean
