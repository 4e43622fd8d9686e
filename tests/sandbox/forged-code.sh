#!/bin/sh
# A transcoder subverted by its input, reporting a failure code of its own making: the worker
# must keep only codes the transcoder has (they are shown to clients and are metric labels).
printf '{"outcome":"failed","code":"pwned-%s","detail":"d","transient":false}' "$$"
exit 3
