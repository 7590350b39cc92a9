"""tools/cloud: run the reference cloud for one installation, or send one command to a charger.

    tools/cloud --broker HOST:PORT --installation FILE [--sessions FILE] [--period S] [--ttl S] [--view]
    tools/cloud --broker HOST:PORT --installations DIR --instance NAME [--group G] [--sessions FILE] [...]
    tools/cloud --broker HOST:PORT cmd SERIAL OP [--auth-id ID] [--settings JSON] [--session-id ID] [--url URL]

OP: authorize (--auth-id), deauthorize, stop, resume, restart, set (--settings '{"max_current_a":16}'),
settings (set with --settings, get without), get, session_ack (--session-id), update (--url of a
tools/release manifest), factory_reset, offboard (the ownership-transfer sequence: set authentication
required on, standalone off and a valid max current (--max-current, default 16), delete the retained
config, factory reset). Prints the reply (each reply for offboard); the exit status is 0 for ok, 1
for an error reply, 2 for no reply. --keys FILE ({"SERIAL": "<cmd_key hex>"}) signs every limit, cmd
and config to those chargers (contract v1.1), for the cloud and for cmd alike.

With --installations DIR --instance NAME it is one of several instances that split the installations
of DIR (one file each) among them over MQTT shared subscriptions (tools/refcloud/shard.py,
docs/cloud.md): start the same command with another NAME, on the same broker, to share the fleet.
"""

import argparse
import json
import signal
import sys
import time

from .balancer import BalancerParams
from .cloud import Cloud, send_command
from .signing import load_keys

OPS = ("authorize", "deauthorize", "stop", "resume", "restart", "set", "settings", "get", "session_ack", "update",
       "factory_reset", "offboard")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/cloud", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker")
    ap.add_argument("--prefix", default="evse", help="topic prefix (default evse)")
    ap.add_argument("--installation", help="installation file (JSON or TOML)")
    ap.add_argument("--sessions", default="sessions.json", help="finished sessions store (default sessions.json)")
    ap.add_argument("--period", type=float, default=3.0, help="allocation round in s (default 3)")
    ap.add_argument("--ttl", type=int, default=30, help="lease length in s (default 30)")
    ap.add_argument("--hold", type=float, default=12.0, help="s a lowered lease still counts (default 12)")
    ap.add_argument("--min-run", type=float, default=120.0, help="s a started charger keeps its slot (default 120)")
    ap.add_argument("--view", action="store_true", help="live terminal view")
    ap.add_argument("--keys", help="JSON file {serial: cmd_key hex}: sign what goes to those chargers")
    ap.add_argument("--installations", help="folder of installation files: run as one sharded instance")
    ap.add_argument("--instance", help="this instance's name (sharded; unique among the instances)")
    ap.add_argument("--group", default="refcloud", help="shared-subscription group (default refcloud)")
    ap.add_argument("--cloud-prefix", default="refcloud", help="topic prefix of presence and forwarding")
    ap.add_argument("--heartbeat", type=float, default=1.0, help="s between presence heartbeats (default 1)")
    ap.add_argument("--keepalive", type=int, default=5, help="MQTT keepalive s (the will fires after 1.5x)")
    sub = ap.add_subparsers(dest="action")
    cp = sub.add_parser("cmd", help="send one command to a charger and print the reply")
    cp.add_argument("serial")
    cp.add_argument("op", choices=OPS)
    cp.add_argument("--auth-id")
    cp.add_argument("--settings", help="JSON object of settings for set")
    cp.add_argument("--session-id")
    cp.add_argument("--url", help="manifest URL for update")
    cp.add_argument("--max-current", type=float, default=16, help="max_current_a set by offboard (default 16)")
    cp.add_argument("--timeout", type=float, default=15.0)
    a = ap.parse_args(argv)
    try:
        keys = load_keys(a.keys)
    except (OSError, ValueError) as e:
        ap.error("--keys: %s" % e)

    if a.action == "cmd":
        fields = {}
        op = a.op
        if op == "settings":
            op = "set" if a.settings else "get"
        if op == "authorize":
            if not a.auth_id:
                ap.error("authorize needs --auth-id")
            fields["auth_id"] = a.auth_id
        if op == "set":
            if not a.settings:
                ap.error("set needs --settings JSON")
            try:
                fields["settings"] = json.loads(a.settings)
            except ValueError as e:
                ap.error("--settings is not JSON: %s" % e)
        if op == "session_ack":
            if not a.session_id:
                ap.error("session_ack needs --session-id")
            fields["session_id"] = a.session_id
        if op == "update":
            if not a.url:
                ap.error("update needs --url")
            fields["url"] = a.url
        steps = [(op, fields, False)]
        if op == "offboard":
            steps = [("set", {"settings": {"auth_required": True, "standalone": False,
                                           "max_current_a": a.max_current}}, False),
                     ("factory_reset", {}, True)]
        for step_op, step_fields, clear in steps:
            try:
                reply = send_command(a.broker, a.serial, step_op, step_fields, prefix=a.prefix, timeout=a.timeout,
                                     keys=keys, clear_config=clear)
            except (OSError, RuntimeError) as e:
                print("error: %s" % e, file=sys.stderr)
                return 2
            if reply is None:
                print("no reply from %s to %s within %g s" % (a.serial, step_op, a.timeout), file=sys.stderr)
                return 2
            print(json.dumps(reply, indent=1))
            if not reply.get("ok"):
                return 1
        return 0

    params = BalancerParams(period_s=a.period, ttl_s=a.ttl, hold_s=a.hold, min_run_s=a.min_run)
    if a.installations:
        return run_shard(a, ap, params, keys)
    if not a.installation:
        ap.error("--installation (or --installations with --instance) is required to run the cloud")
    view = None
    if a.view:
        from .view import View
        view = View()
    logs = []
    cloud = Cloud(a.broker, a.installation, prefix=a.prefix, sessions_path=a.sessions, params=params,
                  log=(logs.append if view else lambda s: print(s, flush=True)), keys=keys)
    signal.signal(signal.SIGTERM, lambda *_: cloud.stopping.set())
    cloud.start()
    print("cloud: %s, %d chargers, broker %s" % (cloud.inst.name, len(cloud.inst.chargers), a.broker), flush=True)
    last = [0.0]

    def render():
        if view and time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            view.show(cloud.snapshot(), logs[-6:])
        return False

    try:
        cloud.run(until=render)
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
    return 0


def run_shard(a, ap, params, keys):
    from .shard import ShardCloud, installation_files

    if not a.instance:
        ap.error("--installations needs --instance NAME")
    try:
        files = installation_files(a.installations)
    except OSError as e:
        ap.error("--installations: %s" % e)
    if not files:
        ap.error("--installations: no .json or .toml file in %s" % a.installations)
    shard = ShardCloud(a.broker, files, a.instance, prefix=a.prefix, cloud_prefix=a.cloud_prefix, group=a.group,
                       sessions_path=a.sessions, params=params, log=lambda s: print(s, flush=True), keys=keys,
                       keepalive=a.keepalive, heartbeat_s=a.heartbeat)
    signal.signal(signal.SIGTERM, lambda *_: shard.stopping.set())
    shard.start()
    print("cloud %s: %d installations, %d chargers, broker %s, group %s" % (
        a.instance, len(shard.sites), len(shard.by_serial), a.broker, a.group), flush=True)
    try:
        shard.run()
    except KeyboardInterrupt:
        pass
    finally:
        shard.stop()
    return 0
