# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
.PHONY: demo test build setup clean

demo:
	scripts/demo-host.sh

test:
	scripts/test.sh

build:
	scripts/setup.sh
	scripts/build.sh

setup:
	scripts/setup.sh

clean:
	cargo clean
