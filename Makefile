.PHONY: run test

# Serve on the embedded defaults (SQLite and files under ./data, 127.0.0.1:8080).
run:
	cargo run --release -- serve

# The whole suite, as CI runs it.
test:
	bash scripts/test.sh
