#!/usr/bin/env python3
"""The conversation of scripts/demo-i2p.sh: alice on server A and bob on
server B find each other's pseudonyms at the relay and talk across I2P.

  conversation.py --relay R.b32.i2p --alice JID:PASSWORD:C2S_PORT \
                  --bob JID:PASSWORD:C2S_PORT [--timeout S] [--since T]

Uses the test client of tests/e2e/client.py (slixmpp). Prints what each side
saw and when (seconds since T); exits 1 if a step fails or if either side
received the other's real address.
"""

import argparse
import asyncio
import logging
import os
import sys
import time

# Quiet: slixmpp warns about its pure-Python stringprep on import.
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "e2e"))
from client import Client, bare  # noqa: E402


def account(spec):
    jid, password, port = spec.rsplit(":", 2)
    return jid, password, int(port)


async def run(args):
    relay, t = args.relay, args.timeout
    (a_jid, a_pw, a_port), (b_jid, b_pw, b_port) = (
        account(args.alice), account(args.bob))
    alice = Client(a_jid + "/phone", a_pw, a_port)
    bob = Client(b_jid + "/laptop", b_pw, b_port)
    await asyncio.gather(alice.login(t), bob.login(t))
    print("%s (server A) and %s (server B) are logged in.\n"
          % (alice.boundjid, bob.boundjid))
    seen = {"alice": [], "bob": []}
    start = args.since or time.time()

    def show(who, line):
        seen[who].append("  [%6.1f s] %s" % (time.time() - start, line))

    async def whoami(name, c):
        c.send_message_ex(relay, "/whoami")
        show(name, "-> %s: /whoami" % relay)
        got, _ = await c.wait_messages(1, t, relay)
        if not got:
            raise RuntimeError("no answer to %s's /whoami within %ss"
                               % (name, t))
        show(name, "<- %s: %s" % (bare(got[0]["from"]), got[0]["body"]))
        return got[0]["body"].strip()

    alice_p = await whoami("alice", alice)
    bob_p = await whoami("bob", bob)

    async def say(name, c, to, text, other_name, other):
        c.send_message_ex(to, text)
        show(name, "-> %s: %s" % (to, text))
        got, _ = await other.wait_messages(1, t)
        if not got:
            raise RuntimeError("%s did not receive %r within %ss"
                               % (other_name, text, t))
        m = got[0]
        if m["error"]:
            show(other_name, "<- %s: error %s"
                 % (bare(m["from"]), m["error"]["condition"]))
            raise RuntimeError("%s got an error instead of %r"
                               % (other_name, text))
        show(other_name, "<- %s: %s" % (bare(m["from"]), m["body"]))

    await say("bob", bob, alice_p, "Hi! I found your pseudonym.", "alice",
              alice)
    await say("alice", alice, bob_p, "Hello, stranger. Who are you?", "bob",
              bob)
    await say("bob", bob, alice_p, "Someone on another server, over I2P.",
              "alice", alice)

    code = 0
    for name, c, other_name, other in (("alice", alice, "bob", bob),
                                       ("bob", bob, "alice", alice)):
        print("What %s's client saw:" % name)
        print("\n".join(seen[name]))
        raw = c.raw.decode("utf-8", "replace")
        leaked = [s for s in (other.boundjid.bare,
                              "/" + other.boundjid.resource) if s in raw]
        if leaked:
            print("  !! %s received %s" % (name, ", ".join(leaked)))
            code = 1
        else:
            print("  (%d bytes of XML received; %s's real address appears "
                  "nowhere in them)" % (len(raw), other_name))
        print()
    await asyncio.gather(alice.logout(), bob.logout())
    return code


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--relay", required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--since", type=float, default=0,
                   help="Unix time the times printed count from")
    args = p.parse_args()
    sys.stdout.reconfigure(encoding="utf-8")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(run(args))
    except Exception as exc:  # noqa: BLE001 - reported to the caller
        print("error: %s" % (exc or repr(exc)), file=sys.stderr)
        code = 1
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
