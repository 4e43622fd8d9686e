#!/bin/sh
# A transcoder that hangs: the media worker must kill it at media.timeout.
exec sleep 600
