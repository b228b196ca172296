#!/bin/sh
echo "coverage is not supported in the offline hv build" >&2
exit 1
