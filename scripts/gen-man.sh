#!/usr/bin/env bash
# Writes deepminectl(8) in roff to stdout from `deepminectl --help`, so the
# man page says what the program says. Usage: gen-man.sh CLI VERSION
set -euo pipefail
cli=$1
version=$2
date=$(date -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%d)
cat <<HDR
.TH DEEPMINECTL 8 "$date" "deepmine $version" "DeepMine"
.SH NAME
deepminectl \\- the operator's console of the DeepMine platform
.SH SYNOPSIS
.B deepminectl
.RI [ "global options" ]
.I command
.RI [ options ]
.RI [ operands ]
.SH DESCRIPTION
HDR
# The help text, verbatim: escape backslashes and leading dots/quotes.
"$cli" --help | sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/' |
    awk 'BEGIN { print ".nf" } { print } END { print ".fi" }'
cat <<'FTR'
.SH FILES
.TP
.I /etc/apache2/mods-available/deepmine.conf
the module's configuration (a2enmod deepmine)
.TP
.I /var/lib/deepmine/deepmine.db
the database the module serves
.TP
.I /etc/deepmine/secret.key
the secret key (readable by Apache's user only)
.SH SEE ALSO
.BR apache2 (8),
.BR a2enmod (8);
/usr/share/doc/deepmine/operations.md.gz
FTR
