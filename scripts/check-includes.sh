#!/usr/bin/env bash
# `make check-includes` (part of `make test`): the rooms of core/ stay rooms.
#  1. A core file includes project headers only by path from the include
#     root ("ledger/ledger.h"), never "../x.h" or a bare "x.h".
#  2. core/ never includes an httpd header.
#  3. The include graph between core folders has no cycle.
#  4. Only core/plugins/ touches a plugin: outside it, nothing in
#     mod_deepmine/ reads a descriptor (->desc, the dm_*_ops tables), tests a
#     plugin structure's size (DM_HAS_FIELD), makes a call context
#     (dm_plugins_call) or calls a plugin function by name; the rest of the
#     server uses the typed calls (plugins/payment.h, mailer.h, kyc.h,
#     inbound.h). The ABI header itself (mod_deepmine/include/) and plugin
#     code (plugins/, tests/plugins/) are not checked.
#  5. core/plugins/'s private headers (call.h, host_services.h) are included
#     only there.
set -euo pipefail
cd "$(dirname "$0")/.."
core=mod_deepmine/core
status=0

bad=$(grep -rnE '#include "' $core | grep -vE '#include "(deepmine/plugin\.h|[a-z_]+/[a-z_0-9]+\.h)"' || true)
if [ -n "$bad" ]; then
  echo "check-includes: include core headers by path from the include root:"; echo "$bad"; status=1
fi
bad=$(grep -rnE '#include [<"](httpd|http_[a-z_]+|ap_[a-z_]+|util_[a-z_]+)\.h[>"]' $core || true)
if [ -n "$bad" ]; then
  echo "check-includes: core/ includes an httpd header:"; echo "$bad"; status=1
fi
missing=$(grep -rhoE '#include "[a-z_]+/[a-z_0-9]+\.h"' $core | sed 's/#include "//;s/"//' | sort -u |
  while read -r h; do
    if [ ! -f "$core/$h" ] && [ "$h" != deepmine/plugin.h ]; then echo "$h"; fi
  done)
if [ -n "$missing" ]; then
  echo "check-includes: included but not in core/:"; echo "$missing"; status=1
fi

# Folder edges "from to", then a depth-first search for a cycle.
edges=$(for f in $(find $core -name '*.[ch]'); do
  from=$(basename "$(dirname "$f")")
  grep -oE '#include "[a-z_]+/' "$f" | sed 's/#include "//;s|/||' | sort -u |
    while read -r to; do
      if [ "$to" != "$from" ] && [ "$to" != deepmine ]; then echo "$from $to"; fi
    done
done | sort -u)
cycle=$(echo "$edges" | awk '
  NF == 2 { adj[$1] = adj[$1] " " $2; nodes[$1]; nodes[$2] }
  function visit(n, path,   i, k, parts) {
    if (state[n] == 1) { print path " -> " n; found = 1; return }
    if (state[n] == 2 || found) return
    state[n] = 1
    k = split(adj[n], parts, " ")
    for (i = 1; i <= k; i++) visit(parts[i], path " -> " n)
    state[n] = 2
  }
  END { for (n in nodes) if (!found) visit(n, "") }')
if [ -n "$cycle" ]; then
  echo "check-includes: the folders of core/ include each other in a cycle:$cycle"; status=1
fi

bad=$(grep -rnE 'DM_HAS_FIELD|(->|\.)desc\b|\bdm_(payment|kyc|mailer)_ops\b|\bdm_plugins_call *\(|(->|\.)(create_checkout|parse_webhook|refund|handle_request) *\(' \
  --include='*.[ch]' mod_deepmine | grep -vE '^mod_deepmine/(core/plugins|include)/' || true)
if [ -n "$bad" ]; then
  echo "check-includes: only core/plugins/ touches a plugin's descriptor or functions; use the"
  echo "  typed calls (plugins/payment.h, mailer.h, kyc.h, inbound.h):"; echo "$bad"; status=1
fi
bad=$(grep -rnE '#include "plugins/(call|host_services)\.h"' --include='*.[ch]' mod_deepmine |
  grep -v '^mod_deepmine/core/plugins/' || true)
if [ -n "$bad" ]; then
  echo "check-includes: a private header of core/plugins/ included outside it:"; echo "$bad"; status=1
fi

n=$(echo "$edges" | grep -c . || true)
if [ $status -eq 0 ]; then echo "check-includes: $(ls -d $core/*/ | wc -l) folders, $n edges, no cycle"; fi
exit $status
