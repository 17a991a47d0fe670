#!/usr/bin/env python3
"""XMPP test client for the axrelay end-to-end tests and the demo.

Uses slixmpp (Debian: python3-slixmpp). Connects only to the address given on
the command line, never looks anything up in DNS, and keeps every byte it
receives so that callers can check what a user's client actually saw.

Two modes:

  client.py serve --jid USER@HOST/RES --password PW --port N
      One client, driven by JSON lines on stdin; one JSON line answers each
      command on stdout. The first line printed is {"event": "ready", ...} or
      {"event": "error", ...}. Commands (every wait is bounded by "timeout",
      in seconds):

        {"cmd": "send", "to": J, "body": B, "type": "chat", "id": I,
         "extra": "<xml children/>"}          body, type, id, extra optional
        {"cmd": "raw", "xml": "<message .../>"}
        {"cmd": "wait", "count": N, "timeout": T, "from": BARE}
            returns the next N received messages (fewer if T expires),
            optionally only those from BARE (and with "id": I, that id),
            and removes them from the queue
        {"cmd": "wait", "kind": "presence" | "iq", ...}
            the same for presence stanzas, or IQ results and errors
        {"cmd": "whoami", "to": RELAY, "timeout": T}
        {"cmd": "carbons", "enable": true | false, "timeout": T}
            XEP-0280 for this session (slixmpp's xep_0280); answers once
            the server has confirmed
        {"cmd": "raw_log"}   everything received on the socket so far
        {"cmd": "quit"}

  client.py demo --port N --relay DOMAIN --user alice:pw --user bob:pw
      The scripted conversation of scripts/demo.sh; prints what each side saw.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import xml.etree.ElementTree as ET

try:
    import slixmpp
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    from slixmpp.xmlstream.matcher.base import MatcherBase
except ImportError:  # pragma: no cover - reported to the caller
    print(json.dumps({"event": "error",
                      "error": "python3-slixmpp is not installed "
                               "(apt-get install python3-slixmpp)"}),
          flush=True)
    sys.exit(3)

HOST = "127.0.0.1"
CLIENT_NS = "jabber:client"


def bare(jid):
    return (jid or "").split("/", 1)[0]


def element_to_dict(el):
    tag = el.tag
    ns = ""
    if tag.startswith("{"):
        ns, tag = tag[1:].split("}", 1)
    return {
        "ns": ns,
        "tag": tag,
        "attrs": dict(el.attrib),
        "text": el.text or "",
        "children": [element_to_dict(c) for c in el],
    }


class MatchIqAnswer(MatcherBase):
    """IQ results and errors only: get and set stay with slixmpp, which
    answers what nobody handles."""

    def match(self, xml):
        return (xml.xml.tag == "{%s}iq" % CLIENT_NS
                and xml.xml.get("type") in ("result", "error"))


def stanza_to_dict(stanza):
    xml = stanza.xml
    out = {
        "from": xml.get("from", ""),
        "to": xml.get("to", ""),
        "type": xml.get("type", ""),
        "id": xml.get("id", ""),
        "body": None,
        "error": None,
        "children": [],
    }
    for child in xml:
        d = element_to_dict(child)
        out["children"].append(d)
        if d["ns"] == CLIENT_NS and d["tag"] == "body" and out["body"] is None:
            out["body"] = child.text or ""
        if d["ns"] == CLIENT_NS and d["tag"] == "error":
            cond = [c["tag"] for c in d["children"]
                    if c["ns"] == "urn:ietf:params:xml:ns:xmpp-stanzas"
                    and c["tag"] != "text"]
            out["error"] = {
                "type": d["attrs"].get("type", ""),
                "condition": cond[0] if cond else "",
            }
    return out


class Client(slixmpp.ClientXMPP):
    """A client that records what it receives."""

    def __init__(self, jid, password, port):
        super().__init__(jid, password)
        self.c2s_port = port
        self.raw = bytearray()
        self.inboxes = {"message": [], "presence": [], "iq": []}
        self.inbox_changed = asyncio.Event()
        self.ready = asyncio.get_event_loop().create_future()
        # Loopback without TLS: allow PLAIN as well as SCRAM.
        self["feature_mechanisms"].unencrypted_plain = True
        for kind, matcher in (
                ("message", MatchXPath("{%s}message" % CLIENT_NS)),
                ("presence", MatchXPath("{%s}presence" % CLIENT_NS)),
                ("iq", MatchIqAnswer(None))):
            self.register_handler(Callback(
                "all " + kind, matcher,
                lambda st, kind=kind: self._on_stanza(kind, st)))
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_failure)
        self.add_event_handler("connection_failed", self._on_failure)
        self.add_event_handler("disconnected", self._on_failure)

    async def get_dns_records(self, domain, port=None):
        # Never resolve anything: the server is on loopback at a known port.
        return [(HOST, HOST, self.c2s_port)]

    def data_received(self, data):
        self.raw.extend(data)
        super().data_received(data)

    def _on_stanza(self, kind, stanza):
        self.inboxes[kind].append(stanza_to_dict(stanza))
        self.inbox_changed.set()

    async def _on_session_start(self, _event):
        try:
            await self.get_roster(timeout=10)
            self.send_presence()
            # Only what arrives after login counts (bind, roster results
            # and the echo of the own presence do not).
            await asyncio.sleep(0.1)
            for kind in ("presence", "iq"):
                self.inboxes[kind].clear()
            if not self.ready.done():
                self.ready.set_result(True)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            self._on_failure(exc)

    def _on_failure(self, reason=None):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(
                "login of %s failed: %r" % (self.boundjid, reason)))

    def start(self):
        self.connect((HOST, self.c2s_port), use_ssl=False,
                     force_starttls=False, disable_starttls=True)

    async def login(self, timeout):
        self.start()
        await asyncio.wait_for(asyncio.shield(self.ready), timeout)

    async def logout(self, timeout=5):
        self.disconnect(wait=1)
        try:
            await asyncio.wait_for(self.disconnected, timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    def send_message_ex(self, to, body=None, mtype="chat", mid=None,
                        extra=None):
        msg = self.make_message(mto=to, mbody=body, mtype=mtype)
        if mid:
            msg["id"] = mid
        if extra:
            wrapper = ET.fromstring(
                "<x xmlns='%s'>%s</x>" % (CLIENT_NS, extra))
            for child in list(wrapper):
                msg.xml.append(child)
        msg.send()
        return msg["id"]

    async def set_carbons(self, enable, timeout):
        # Registered on first use only, so that clients that never ask for
        # carbons behave exactly as before.
        if "xep_0280" not in self.plugin:
            self.register_plugin("xep_0280")
        carbons = self.plugin["xep_0280"]
        if enable:
            await carbons.enable(timeout=timeout)
        else:
            await carbons.disable(timeout=timeout)

    async def wait_messages(self, count, timeout, from_bare=None,
                            kind="message", stanza_id=None):
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        inbox = self.inboxes[kind]

        def matching():
            return [m for m in inbox
                    if (from_bare is None or bare(m["from"]) == from_bare)
                    and (stanza_id is None or m["id"] == stanza_id)]

        while len(matching()) < count:
            left = deadline - loop.time()
            if left <= 0:
                break
            self.inbox_changed.clear()
            try:
                await asyncio.wait_for(self.inbox_changed.wait(), left)
            except asyncio.TimeoutError:
                break
        got = matching()[:count]
        for m in got:
            inbox.remove(m)
        return got, len(got) < count


async def serve(args):
    out_lock = asyncio.Lock()

    async def emit(obj):
        async with out_lock:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    client = Client(args.jid, args.password, args.port)
    try:
        await client.login(args.timeout)
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        await emit({"event": "error", "error": str(exc) or repr(exc)})
        return 1
    await emit({"event": "ready", "jid": str(client.boundjid)})

    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    while True:
        line = await reader.readline()
        if not line:
            await client.logout()
            return 0
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            name = cmd.get("cmd")
            timeout = float(cmd.get("timeout", 10))
            if name == "send":
                mid = client.send_message_ex(
                    cmd["to"], cmd.get("body"), cmd.get("type", "chat"),
                    cmd.get("id"), cmd.get("extra"))
                await emit({"ok": True, "id": mid})
            elif name == "raw":
                client.send_raw(cmd["xml"])
                await emit({"ok": True})
            elif name == "wait":
                got, timed_out = await client.wait_messages(
                    int(cmd.get("count", 1)), timeout, cmd.get("from"),
                    cmd.get("kind", "message"), cmd.get("id"))
                await emit({"ok": True, "messages": got,
                            "timed_out": timed_out})
            elif name == "whoami":
                relay = cmd["to"]
                client.send_message_ex(relay, "/whoami")
                got, _ = await client.wait_messages(1, timeout, relay)
                if got:
                    await emit({"ok": True, "body": got[0]["body"],
                                "message": got[0]})
                else:
                    await emit({"ok": False,
                                "error": "no answer from %s within %ss"
                                         % (relay, timeout)})
            elif name == "carbons":
                await client.set_carbons(bool(cmd.get("enable", True)),
                                         timeout)
                await emit({"ok": True})
            elif name == "raw_log":
                await emit({"ok": True,
                            "xml": client.raw.decode("utf-8", "replace")})
            elif name == "quit":
                await client.logout()
                await emit({"ok": True})
                return 0
            else:
                await emit({"ok": False, "error": "unknown command %r" % name})
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            await emit({"ok": False, "error": repr(exc)})


async def demo(args):
    relay = args.relay
    users = [u.split(":", 1) for u in args.user]
    (a_name, a_pw), (b_name, b_pw) = users[0], users[1]
    alice = Client("%s@localhost/phone" % a_name, a_pw, args.port)
    bob = Client("%s@localhost/laptop" % b_name, b_pw, args.port)
    t = args.timeout
    await asyncio.gather(alice.login(t), bob.login(t))
    print("%s and %s are logged in; each will see only the other's "
          "pseudonym.\n" % (alice.boundjid, bob.boundjid))

    seen = {a_name: [], b_name: []}

    def show(who, direction, peer, body):
        seen[who].append("  %s %s: %s" % (direction, peer, body))

    async def whoami(name, c):
        c.send_message_ex(relay, "/whoami")
        show(name, "->", relay, "/whoami")
        got, _ = await c.wait_messages(1, t, relay)
        if not got:
            raise RuntimeError("the relay did not answer /whoami within %ss"
                               % t)
        show(name, "<-", bare(got[0]["from"]), got[0]["body"])
        return got[0]["body"].strip()

    alice_p = await whoami(a_name, alice)
    bob_p = await whoami(b_name, bob)

    async def say(name, c, to, text, other_name, other):
        c.send_message_ex(to, text)
        show(name, "->", to, text)
        got, _ = await other.wait_messages(1, t)
        if not got:
            raise RuntimeError("%s did not receive %r within %ss"
                               % (other_name, text, t))
        m = got[0]
        if m["error"]:
            show(other_name, "<-", bare(m["from"]),
                 "error %s" % m["error"]["condition"])
            raise RuntimeError("%s got an error instead of %r" % (
                other_name, text))
        show(other_name, "<-", bare(m["from"]), m["body"])

    await say(b_name, bob, alice_p, "Hi! I found your pseudonym.", a_name,
              alice)
    await say(a_name, alice, bob_p, "Hello, stranger. Who are you?", b_name,
              bob)
    await say(b_name, bob, alice_p, "Just someone you will never know.",
              a_name, alice)

    for name, c, other_name, other in ((a_name, alice, b_name, bob),
                                       (b_name, bob, a_name, alice)):
        print("What %s's client saw:" % name)
        print("\n".join(seen[name]))
        raw = c.raw.decode("utf-8", "replace")
        leaked = [other.boundjid.bare, other_name + "@",
                  "/" + other.boundjid.resource]
        if any(s in raw for s in leaked):
            print("  !! %s's real address appears in what %s received"
                  % (other_name, name))
            return 1
        print("  (%d bytes of XML received; %s's real address appears "
              "nowhere in them)" % (len(raw), other_name))
        print()
    await asyncio.gather(alice.logout(), bob.logout())
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--jid", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--timeout", type=float, default=15)
    d = sub.add_parser("demo")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--relay", required=True)
    d.add_argument("--user", action="append", required=True)
    d.add_argument("--timeout", type=float, default=15)
    for p in (s, d):
        p.add_argument("--max-lifetime", type=float, default=600,
                       help="exit after this many seconds whatever happens")
        p.add_argument("--debug", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR,
        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    sys.stdout.reconfigure(encoding="utf-8")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # A client left behind by a crashed caller must not live forever.
    loop.call_later(args.max_lifetime, os._exit, 4)
    runner = serve if args.mode == "serve" else demo
    try:
        code = loop.run_until_complete(
            asyncio.wait_for(runner(args), args.max_lifetime))
    except Exception as exc:  # noqa: BLE001
        print("error: %s" % (exc or repr(exc)), file=sys.stderr)
        code = 1
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
