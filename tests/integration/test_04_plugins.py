"""Plugin loading through ABI v1 in a real Apache: every refusal stops
start-up (also `apache2 -t`) with one log line naming the plugin and the
reason; newer and older minors load."""
import os

import pytest

from conftest import PLUGINS, TESTPLUGINS


def tp(name):
    return os.path.join(TESTPLUGINS, name + ".so")


def refused(s, conf, *needles):
    s.write_local_conf(conf)
    r = s.configtest()
    out = r.stdout + r.stderr + s.log_text()
    assert r.returncode != 0, out
    for n in needles:
        assert n in out, (n, out)
    return out


def test_missing_so_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer ghost /nonexistent/ghost.so\n",
            "local.conf", '"ghost"', "cannot load")


def test_so_without_entry_symbol_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer noentry %s\n" % tp("no_entry"),
            '"noentry"', "deepmine_plugin_entry")


def test_other_abi_major_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer future %s\n" % tp("abi_major2"),
            '"future"', "ABI 2", "ABI 1")


def test_kind_mismatch_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer pay %s\n" % tp("kind_payment"),
            '"pay"', "payment", "mailer")


def test_missing_required_setting_is_refused(new_server):
    s = new_server(seed=False)
    out = refused(s, "DeepMinePlugin mailer needy %s\n" % tp("needs_setting"),
                  '"needy"', "api_key", "DM00011")
    assert out.count("DM00011") == 1


def test_failing_init_is_refused_with_its_message(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer broken %s\n" % tp("init_fails"),
            '"broken"', "api_key is malformed")


def test_setting_for_undeclared_plugin_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePluginSet nobody key value\n", '"nobody"')


def test_missing_env_setting_is_refused(new_server):
    s = new_server(seed=False)
    refused(s, "DeepMinePlugin mailer needy %s\n"
               "DeepMinePluginSet needy api_key env:DM_SURELY_UNSET_VAR\n" % tp("needs_setting"),
            "DM_SURELY_UNSET_VAR")


def test_refused_plugin_stops_real_start(new_server):
    s = new_server(seed=False)
    s.write_local_conf("DeepMinePlugin mailer broken %s\n" % tp("init_fails"))
    s.start(wait=False)
    rc = s.proc.wait(timeout=15)
    assert rc != 0
    assert "api_key is malformed" in s.log_text() + s.proc.stdout.read()
    s.expect_log("DM00011")


@pytest.mark.parametrize("name", ["abi_newer", "abi_older"])
def test_newer_and_older_minor_load_and_serve(new_server, name):
    s = new_server()
    s.write_local_conf("DeepMinePlugin mailer %s %s\n" % (name.replace("_", ""), tp(name)))
    r = s.configtest()
    assert r.returncode == 0, r.stdout + r.stderr
    s.start()
    assert s.get("/api/health").json()["status"] == "ok"
    assert "DM00100" in s.log_text()  # the plugin-loaded line


def test_settings_from_file_reach_the_plugin(new_server):
    s = new_server(seed=False)
    secret = os.path.join(s.var, "api_key")
    with open(secret, "w") as f:
        f.write("sk_test_4242\n")
    s.write_local_conf("DeepMinePlugin mailer needy %s\n"
                       "DeepMinePluginSet needy api_key file:%s\n" % (tp("needs_setting"), secret))
    r = s.configtest()
    assert r.returncode == 0, r.stdout + r.stderr + s.log_text()


def test_the_spool_mailer_of_make_run_is_loaded(new_server):
    s = new_server().start()
    assert os.path.exists(os.path.join(PLUGINS, "mailer-spool.so"))
    assert '"spool"' in s.log_text() or "spool" in s.log_text()
