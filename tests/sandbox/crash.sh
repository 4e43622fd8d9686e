#!/bin/sh
# A transcoder that crashes: the media worker must fail the job, not itself.
kill -SEGV $$
