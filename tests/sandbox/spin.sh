#!/bin/sh
# A transcoder that spins: the media worker must stop it at media.cpu_limit.
while :; do :; done
