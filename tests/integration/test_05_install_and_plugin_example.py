"""`make install` stages everything a plugin author and an operator need,
and the example plugin of docs/plugins.md — the code block itself — builds
with `pkg-config deepmine-plugin` and loads into a real Apache."""
import os
import re
import subprocess

from conftest import ROOT


def staged_install(tmp_path):
    dest = tmp_path / "stage"
    subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=%s" % dest],
                   check=True, capture_output=True)
    return dest


def test_install_stages_module_plugins_header_pc_and_a2enmod_files(tmp_path):
    dest = staged_install(tmp_path)
    moddir = subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True,
                            text=True).stdout.strip()
    for rel in [moddir + "/mod_deepmine.so",
                "/usr/local/lib/deepmine/plugins/mailer-spool.so",
                "/usr/local/include/deepmine/plugin.h",
                "/usr/local/lib/pkgconfig/deepmine-plugin.pc",
                "/usr/local/bin/deepminectl",
                "/etc/apache2/mods-available/deepmine.load",
                "/etc/apache2/mods-available/deepmine.conf",
                # the default DeepMineLegalDir: the module refuses to start without them
                "/etc/deepmine/legal/terms.md", "/etc/deepmine/legal/privacy.md"]:
        assert os.path.isfile(str(dest) + rel), rel
    load = open(str(dest) + "/etc/apache2/mods-available/deepmine.load").read()
    assert "LoadModule deepmine_module %s/mod_deepmine.so" % moddir in load
    conf = open(str(dest) + "/etc/apache2/mods-available/deepmine.conf").read()
    assert "/usr/local/lib/deepmine/plugins/mailer-spool.so" in conf
    assert "@" not in conf
    # the pages, and their directory with the deep-link fallback
    web = str(dest) + "/usr/local/share/deepmine/web"
    for rel in ["/index.html", "/admin/index.html", "/manifest.webmanifest",
                "/icons/icon-192.png"]:
        assert os.path.isfile(web + rel), rel
    assert any(f.endswith(".js") for f in os.listdir(web + "/assets"))
    assert '<Directory "/usr/local/share/deepmine/web">' in conf
    assert "FallbackResource /index.html" in conf and "frame-ancestors 'none'" in conf


def build_docs_example(tmp_path):
    dest = staged_install(tmp_path)
    text = open(os.path.join(ROOT, "docs", "plugins.md")).read()
    code = re.search(r"```c\n(.*?)```", text, re.S).group(1)
    assert "deepmine_plugin_entry" in code
    src = tmp_path / "mailer_example.c"
    src.write_text(code)
    env = dict(os.environ,
               PKG_CONFIG_PATH=str(dest) + "/usr/local/lib/pkgconfig",
               PKG_CONFIG_SYSROOT_DIR=str(dest))
    cflags = subprocess.run(["pkg-config", "--cflags", "deepmine-plugin"], env=env,
                            capture_output=True, text=True, check=True).stdout.split()
    so = tmp_path / "mailer-example.so"
    subprocess.run(["cc", "-std=gnu11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden",
                    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"] + cflags +
                   ["-o", str(so), str(src)], check=True)
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True,
                          text=True, check=True).stdout
    exported = [l.split()[-1] for l in syms.splitlines() if " T " in l]
    assert exported == ["deepmine_plugin_entry"], syms
    return so


def test_docs_example_builds_with_pkg_config_and_loads(tmp_path, new_server):
    so = build_docs_example(tmp_path)
    s = new_server()
    s.write_local_conf("DeepMinePlugin mailer example %s\n"
                       "DeepMinePluginSet example api_key re_0123456789abcdefghij\n" % so)
    s.start()
    assert s.get("/api/health").json()["status"] == "ok"
    assert "mailer-example" in s.log_text()


def test_docs_example_refusal_reads_as_documented(tmp_path, new_server):
    so = build_docs_example(tmp_path)
    s = new_server(seed=False)
    s.write_local_conf("DeepMinePlugin mailer example %s\n"
                       "DeepMinePluginSet example api_key short\n" % so)
    r = s.configtest()
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert 'plugin "example"' in out and "api_key is too short" in out, out
