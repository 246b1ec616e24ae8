#!/usr/bin/env bash
# `make lint`: clang-tidy and cppcheck on project code, zero findings at the
# checks chosen in .clang-tidy and below; and no file that clang-format (with
# the committed .clang-format) would change.
# usage: lint.sh file.c ... -- <compiler flags> -- <files to format-check>
set -uo pipefail
files=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
shift || true
flags=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
shift || true
fmt=("$@")

status=0
echo "lint: clang-format on ${#fmt[@]} files"
if [ ${#fmt[@]} -gt 0 ] && ! clang-format --dry-run -Werror "${fmt[@]}" 2>/tmp/dm-clang-format.$$; then
  grep -E '^[^ ].*(warning|error):' /tmp/dm-clang-format.$$ | cut -d: -f1 | sort -u \
    | sed 's/^/  not formatted (make format): /'
  status=1
fi
rm -f /tmp/dm-clang-format.$$

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
# The project's own include paths (absolute or relative), not the system's:
# cppcheck resolves our headers and still skips APR's and Apache's.
incs=()
for f in "${flags[@]}"; do
  case "$f" in -I*mod_deepmine*|-I*build*) incs+=("$f");; esac
done
if ! cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
     --inline-suppr --suppress=missingIncludeSystem --std=c11 \
     -D__GNUC__ "${incs[@]}" "${files[@]}"; then
  status=1
fi
[ $status -eq 0 ] && echo "lint: no findings"
exit $status
