#!/usr/bin/env python3
"""Tools for a private I2P network of i2pd routers on one machine.

Used by scripts/demo-i2p.sh and tests/e2e_i2p.rs. Talks only to the routers'
web consoles and SOCKS proxies on 127.0.0.1.

  i2pnet.py b32 KEYS_FILE
      the .b32.i2p name of an i2pd keys file (e.g. a server tunnel's)
  i2pnet.py seed ROUTER_INFO DATADIR...
      install a router's router.info into other routers' netDb/, so that
      they find it without reseeding
  i2pnet.py wait-tunnels --timeout S CONSOLE_PORT...
      until every router has two exploratory tunnels through other routers
  i2pnet.py wait-published --timeout S --floodfill PORT... \
          --local PORT=NAME.b32.i2p... [--client PORT=NAME.b32.i2p...]
      until each local destination has tunnels on its router and every
      floodfill stores its LeaseSet, and each client destination (a SOCKS
      proxy's) has tunnels
  i2pnet.py wait-socks --timeout S --proxy PORT --to HOST:PORT
      until the SOCKS5 proxy on 127.0.0.1:PORT opens a stream to HOST:PORT

A wait prints what it waited for and how long it took, exits 0 when ready
and 1 (saying what is missing) when the timeout passes.
"""

import argparse
import base64
import hashlib
import os
import socket
import sys
import time
import urllib.request


def destination_hash(data):
    # A destination: 256-byte public key, 128-byte signing key, then a
    # certificate (type, 2-byte length, payload). Its hash names it.
    if len(data) < 387:
        raise ValueError("too short for an I2P destination")
    length = int.from_bytes(data[385:387], "big")
    return hashlib.sha256(data[:387 + length]).digest()


def b32_name(path):
    with open(path, "rb") as f:
        digest = destination_hash(f.read())
    return base64.b32encode(digest).decode().lower().rstrip("=") + ".b32.i2p"


def seed(router_info, datadirs):
    with open(router_info, "rb") as f:
        data = f.read()
    ident = base64.b64encode(destination_hash(data), altchars=b"-~").decode()
    for d in datadirs:
        folder = os.path.join(d, "netDb", "r" + ident[0])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "routerInfo-%s.dat" % ident), "wb") as f:
            f.write(data)
    print(ident)


def console(port, page=""):
    url = "http://127.0.0.1:%d/%s" % (port, page)
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait(what, timeout, check):
    start = time.monotonic()
    missing = "nothing checked yet"
    while True:
        missing = check()
        if not missing:
            print("ready after %.1f s: %s" % (time.monotonic() - start, what),
                  flush=True)
            return 0
        if time.monotonic() - start >= timeout:
            print("not ready after %.0f s: %s; missing: %s"
                  % (timeout, what, missing), file=sys.stderr, flush=True)
            return 1
        time.sleep(0.5)


def exploratory_missing(ports):
    missing = []
    for port in ports:
        page = console(port, "?page=tunnels")
        if page.count("(exploratory)") < 2 or "established" not in page:
            missing.append("router with console %d" % port)
            continue
        if sum(1 for line in page.split("<br>")
               if "exploratory" in line and "established" in line) < 2:
            missing.append("router with console %d" % port)
    return ", ".join(missing)


def published_missing(floodfills, locals_, clients):
    missing = []
    for port, name in locals_ + clients:
        short = name[:-len(".b32.i2p")]
        page = console(port, "?page=local_destination&b32=" + short)
        if page.count("tunnel established") < 2:
            missing.append("tunnels of %s" % name)
    for ff in floodfills:
        page = console(ff, "?page=leasesets")
        for _, name in locals_:
            if name[:-len(".b32.i2p")] not in page:
                missing.append("LeaseSet of %s on floodfill %d" % (name, ff))
    return ", ".join(missing)


def socks_connect(proxy, host, port, timeout=60):
    """0 when the proxy opened the stream, else the SOCKS5 reply code
    (or -1 when the proxy did not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", proxy), timeout) as s:
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                return -1
            name = host.encode()
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name
                      + port.to_bytes(2, "big"))
            reply = s.recv(10)
            return reply[1] if len(reply) >= 2 else -1
    except OSError:
        return -1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("b32")
    s.add_argument("keys")
    s = sub.add_parser("seed")
    s.add_argument("router_info")
    s.add_argument("datadirs", nargs="+")
    s = sub.add_parser("wait-tunnels")
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("ports", nargs="+", type=int)
    s = sub.add_parser("wait-published")
    s.add_argument("--timeout", type=float, default=240)
    s.add_argument("--floodfill", nargs="+", type=int, required=True)
    s.add_argument("--local", nargs="+", required=True)
    s.add_argument("--client", nargs="*", default=[])
    s = sub.add_parser("wait-socks")
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--proxy", type=int, required=True)
    s.add_argument("--to", required=True)
    a = p.parse_args()

    if a.cmd == "b32":
        print(b32_name(a.keys))
        return 0
    if a.cmd == "seed":
        seed(a.router_info, a.datadirs)
        return 0
    if a.cmd == "wait-tunnels":
        return wait("%d routers with exploratory tunnels" % len(a.ports),
                    a.timeout, lambda: exploratory_missing(a.ports))
    if a.cmd == "wait-published":
        def pairs(items):
            out = []
            for item in items:
                port, _, name = item.partition("=")
                out.append((int(port), name))
            return out
        locals_, clients = pairs(a.local), pairs(a.client)
        return wait("LeaseSets of %s on %d floodfills, tunnels of %d SOCKS "
                    "proxies" % (", ".join(n for _, n in locals_),
                                 len(a.floodfill), len(clients)),
                    a.timeout,
                    lambda: published_missing(a.floodfill, locals_, clients))
    if a.cmd == "wait-socks":
        host, _, port = a.to.rpartition(":")
        last = {}

        def check():
            code = socks_connect(a.proxy, host, int(port))
            last["code"] = code
            return "" if code == 0 else "SOCKS5 reply %d" % code
        return wait("stream from SOCKS proxy %d to %s" % (a.proxy, a.to),
                    a.timeout, check)
    return 2


if __name__ == "__main__":
    sys.exit(main())
