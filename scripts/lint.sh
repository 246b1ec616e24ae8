#!/usr/bin/env bash
# `make lint`: clang-tidy and cppcheck on project code, zero findings at the
# checks chosen in .clang-tidy and below.
# usage: lint.sh file.c ... -- <compiler flags>
set -uo pipefail
files=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
shift || true
flags=("$@")

status=0
echo "lint: clang-tidy on ${#files[@]} files"
if ! clang-tidy --quiet "${files[@]}" -- -std=gnu11 "${flags[@]}" >/tmp/dm-clang-tidy.$$ 2>&1; then
  status=1
fi
if grep -qE '(warning|error):' /tmp/dm-clang-tidy.$$; then
  grep -E '(warning|error):' -A3 /tmp/dm-clang-tidy.$$
  status=1
fi
rm -f /tmp/dm-clang-tidy.$$

echo "lint: cppcheck"
incs=()
for f in "${flags[@]}"; do case "$f" in -Imod_deepmine*|-Ibuild*) incs+=("$f");; esac; done
if ! cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
     --inline-suppr --suppress=missingIncludeSystem --std=c11 \
     -D__GNUC__ "${incs[@]}" "${files[@]}"; then
  status=1
fi
[ $status -eq 0 ] && echo "lint: no findings"
exit $status
