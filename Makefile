.PHONY: run test

# Serve on the embedded defaults (SQLite and files under ./data, 127.0.0.1:8080), after
# installing the FFmpeg development packages the build needs if they are missing.
run:
	bash scripts/build-deps.sh
	cargo run --release -- serve

# The whole suite, as CI runs it.
test:
	bash scripts/test.sh
