#!/usr/bin/env bash
# Builds build/deepmine_<version>_<arch>.deb from what `make all web` built:
# the module, the plugins, deepminectl, the pages, the a2enmod files, the
# docs and a deepminectl(8) man page (made from `deepminectl --help`).
# Called by `make deb`; docs/operations.md ("The Debian package").
set -euo pipefail
cd "$(dirname "$0")/.."

B=build
version=$(sed -n 's/^#define DM_VERSION "\(.*\)"/\1/p' mod_deepmine/http/dm_http.h)
arch=$(dpkg --print-architecture)
stage=$B/deb/root
out=$B/deepmine_${version}_${arch}.deb

rm -rf "$B/deb"
mkdir -p "$stage"
umask 022

# 1. the files, where a Debian system keeps them
make -s install DESTDIR="$PWD/$stage" PREFIX=/usr LIBDIR=/usr/lib \
    INCLUDEDIR=/usr/include PKGCONFIGDIR=/usr/share/pkgconfig \
    WEBDIR=/usr/share/deepmine/web >/dev/null
find "$stage" -name '*.so' -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/deepminectl"

# 2. docs, the copyright file, a changelog and the man page
doc=$stage/usr/share/doc/deepmine
install -d "$doc" "$stage/usr/share/man/man8"
install -m 0644 packaging/deb/copyright "$doc/copyright"
for f in README.md docs/*.md; do
    gzip -9n <"$f" >"$doc/$(basename "$f").gz"
done
{
    echo "deepmine ($version) unstable; urgency=medium"
    echo
    echo "  * Release $version (see the project's git history)."
    echo
    echo " -- DeepMine developers <dev@deepmine.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.gz"
bash scripts/gen-man.sh "$B/deepminectl" "$version" | gzip -9n >"$stage/usr/share/man/man8/deepminectl.8.gz"
chmod 0644 "$stage/usr/share/man/man8/deepminectl.8.gz"
install -D -m 0644 packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/deepmine"

# 3. control files
ctl=$stage/DEBIAN
install -d "$ctl"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$ctl/"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$ctl/conffiles"
# The libraries the binaries need, as dpkg-shlibdeps reads them (it wants a
# debian/control beside it). The module's Apache and APR symbols come from
# httpd itself (apache2-api-20120211).
shl=$B/deb/shlibs
mkdir -p "$shl/debian"
printf 'Source: deepmine\n\nPackage: deepmine\nArchitecture: any\n' >"$shl/debian/control"
bins=$(find "$PWD/$stage" -name '*.so' -o -path '*/usr/bin/deepminectl' | sort)
depends=$(cd "$shl" && dpkg-shlibdeps -O --ignore-missing-info --warnings=0 $bins 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
# libpq, libcurl and libcrypto are loaded on first use (dlopen: store/db_pg.c,
# plugins/http_client.c, base/libcrypto.c), so dpkg-shlibdeps does not see
# them in the module: name the packages that hold the sonames it opens.
multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
for so in libpq.so.5 libcurl.so.4 libcrypto.so.3; do
    pkg=$(dpkg -S "/usr/lib/$multiarch/$so" 2>/dev/null | head -1 | cut -d: -f1)
    [ -n "$pkg" ] || { echo "build-deb: no installed package holds $so" >&2; exit 1; }
    case ", $depends," in *", $pkg "* | *", $pkg,"*) ;; *) depends="$depends, $pkg" ;; esac
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@DEPENDS@/$depends/" packaging/deb/control.in >"$ctl/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
    xargs md5sum) >"$ctl/md5sums"
chmod 0644 "$ctl/control" "$ctl/conffiles" "$ctl/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "built $out"
